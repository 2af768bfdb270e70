#!/usr/bin/env bash
# How the default model shipped in src/refalign/default_model was made (see its README.md, the model card).
# Run from the repository root with ../shared/data/dreambooth-dev beside it; about 60 minutes on 2 CPU cores.
#   bash scripts/train_default_model.sh [RUN_DIR]
set -euo pipefail
run=${1:-runs/default}
minutes=${MINUTES:-50}

# 1. train the tiny preset, both modes of paper §3.4, with the auxiliary eq. 5 loss (weight 0.5)
OMP_NUM_THREADS=2 refalign train --config configs/tiny.yaml --output-dir "$run" --max-steps 4000 \
  --checkpoint-every 500 --set batch_size=8 --set align_loss_weight=0.5 --set ema_decay=0.995 \
  --set validate_every=500 --set time_limit_minutes="$minutes" --set data.cache_dir="$run/cache"

# 2. benchmark cases from the development photos (fixed seed)
refalign make-cases ../shared/data/dreambooth-dev --out "$run/devcases" --per-photo 1 --seed 0

# 3. step x layer search on the warp cases (they carry correspondence.png); store the best in refalign.json
refalign align-search "$run/devcases" --model "$run/final" --steps 10 --output "$run/search" --write-defaults

# 4. copy into the package
rm -rf src/refalign/default_model && mkdir -p src/refalign/default_model
cp -r "$run/final/." src/refalign/default_model/
