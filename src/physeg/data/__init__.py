"""Data: real datasets on disk (:mod:`.datasets`), synthetic images (:mod:`.synthetic`), noise
(:mod:`.noise`).

``datasets`` pairs images with masks by file name, splits them reproducibly and loads the
layouts of the development datasets; ``synthetic`` and ``noise`` build the seed-000 test images
with exact masks. Submodules are imported on use, so ``import physeg.data`` is cheap.
"""
