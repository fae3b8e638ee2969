"""Regenerate docs/napari_widget.png: the physeg dock widget after segmenting a sample image.

Run on a screen (or a virtual one)::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/napari_screenshot.py docs/napari_widget.png
"""

from __future__ import annotations

import sys
import time

import imageio.v3 as iio
import napari
from qtpy.QtWidgets import QApplication

from physeg.napari import _sample
from physeg.napari._widget import PhysegWidget


def _settle(seconds: float = 1.0) -> None:
    app = QApplication.instance()
    t0 = time.time()
    while time.time() - t0 < seconds:
        app.processEvents()
        time.sleep(0.05)


def main(path: str) -> None:
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    for data, kw, kind in _sample.colour_circle():
        if kind == "image":
            viewer.add_image(data, **kw)
    widget = PhysegWidget(viewer)
    viewer.window.add_dock_widget(widget, name="physeg: Segment", area="right")
    widget.method.value = "heat"
    widget.image.value = "noisy colour circle"
    widget.run_segment()
    t0 = time.time()
    while widget.worker is not None and time.time() - t0 < 120:
        _settle(0.1)
    labels = viewer.layers["noisy colour circle labels"]
    labels.contour = 3  # the boundary, so the image stays visible under it
    _settle()
    iio.imwrite(path, viewer.screenshot(canvas_only=False, flash=False))
    print(widget.status.value)
    viewer.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/napari_widget.png")
