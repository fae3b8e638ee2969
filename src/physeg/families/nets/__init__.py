"""Neural segmentation methods: DynaSeg (per-image unsupervised CNN), MSNet, PDE-regularised U-Net.

Each method lives in its own module; torch is imported lazily inside functions so that
``import physeg`` and the method registry stay fast without torch.
"""
