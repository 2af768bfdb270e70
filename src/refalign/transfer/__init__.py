"""Repair from the reference's own pixels (DESIGN §6, beyond the paper): per-window registration across views,
photometric (colour) transfer, full-resolution transfer of the registered reference into the hole, and region-level
synthesis where no geometric model fits. Pure numpy/OpenCV; the pipeline chooses a *source* for each window's hole
from these and the refiner harmonizes it."""
