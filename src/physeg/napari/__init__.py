"""The physeg napari plugin (``pip install "physeg[napari]"``).

Contributions (``napari.yaml``, npe2): a dock widget (:class:`._widget.PhysegWidget`) built
from the method registry, and sample data (:mod:`._sample`: the synthetic shapes with their
exact masks). Nothing here is imported by ``import physeg``; napari, magicgui and qtpy are
imported only when napari loads the plugin.
"""
