#!/usr/bin/env bash
# The harmonizer fine-tune of issue 15 part 5 (measured, not shipped: see the model card, "Limits"). Continues the
# shipped model on samples the transfer engine sources from the development photos (data source kind "engine",
# refalign.data.engine_pairs): the hole holds the engine's transferred pixels as the model's masked-image input
# (what refinement.harmonize feeds it), and alignment samples carry the engine's correspondence as the eq. 5 target.
# Run from the repository root with ../shared/data/dreambooth-dev beside it; about 45 min on 2 CPU cores
# (the engine pool, 600 registration attempts: 8 min, cached; two stages of 800 steps: 15 min each).
#   bash scripts/train_harmonizer.sh [RUN_DIR]
# Then compare source-only with source + model:
#   refalign bench devcases --model RUN_DIR/stage2/final --method refalign --set refinement.harmonize=true -o OUT
set -euo pipefail
run=${1:-runs/harmonizer}
sources='[{kind: procedural, count: 400, views: 2, size: 192, seed: 0}, {kind: multiview, path: ../shared/data/dreambooth-dev, repeat: 10}, {kind: engine, path: ../shared/data/dreambooth-dev, count: 600, seed: 0}]'
common=(--set batch_size=8 --set align_loss_weight=0.5 --set ema_decay=0.995 --set data.cache_dir="$run/cache"
        --set model.prediction_type=sample --set model.residual_prediction=true --set model.timestep_spacing=trailing
        --set model.warped_guidance=true --set mask_loss_weight=5 --set high_timestep_share=0.5
        --set "data.sources=$sources" --set validate_every=200 --set optim.lr_schedule=cosine
        --set optim.warmup_steps=50 --checkpoint-every 200 --max-steps 800)

# 1. 40 % of the samples from the engine pool (half harmonize, half real-pair alignment), learning rate 5e-5
OMP_NUM_THREADS=1 refalign train --config configs/tiny.yaml --output-dir "$run/stage1" "${common[@]}" \
  --set model.init_from=src/refalign/default_model --set data.engine_ratio=0.4 \
  --set optim.lr_unet=5e-5 --set optim.lr_encoder=5e-5

# 2. 80 % from the engine pool, learning rate 1e-4
OMP_NUM_THREADS=1 refalign train --config configs/tiny.yaml --output-dir "$run/stage2" "${common[@]}" \
  --set model.init_from="$run/stage1/final" --set data.engine_ratio=0.8 \
  --set optim.lr_unet=1e-4 --set optim.lr_encoder=1e-4
