"""The physeg dock widget: segment the selected image, fit from a Labels layer, apply, save.

Generated from the method registry (``physeg.methods()``): one row per parameter of the
chosen method, its widget from the :class:`physeg.api.Param` (a spin box with the declared
range for an integer, a tick box for a bool, a list for choices, a text field otherwise, where
empty means the default), and the parameter's type, range, default and help as its tooltip.

Work runs in a napari worker thread, so the viewer stays responsive:

* **Segment** runs the method on the selected Image layer and adds (or updates) the Labels
  layer ``"<image> labels"``. An RGB layer goes to the method as colour (``channel_axis=-1``)
  when the method declares colour, else as the mean of R, G, B (physeg's one colour policy,
  :func:`physeg._validate.prepare_colour`); a 3D layer is a volume for methods that declare
  3D, and a 2D-only method segments the plane the viewer shows, into that plane of the labels
  volume. The layer's scale is the ``spacing``.
* **Fit** calls ``physeg.fit(method, [image], [labels], ...)`` on the selected Image and
  Labels layers. When the method's fit declares scribbles (an ``unlabelled`` fit
  parameter), 0 in the Labels layer means "unlabelled" (``unlabelled=0``): paint a few strokes
  per class with labels 1, 2, ...; otherwise the Labels layer is a full mask (0 =
  background). **Apply** segments the current or every open image with the model;
  **Save model** / **Load model** write and read it (``physeg.io``: atomic; a file is
  replaced only when the save dialog confirmed it).
* The **progress bar** follows ``physeg.fit(progress=)`` (CBO iterations, training
  iterations) and the images of an apply; a segmentation reports no steps, so its bar only
  shows that it runs. **Cancel** stops a fit at its next progress step and an apply before its
  next image; a running segmentation cannot be interrupted inside the method, so its result
  is discarded when it arrives.
"""

from __future__ import annotations

import inspect
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)

__all__ = ["PhysegWidget", "fit_takes_scribbles", "param_widget"]

#: suffix of the Labels layer a segmentation of image ``<name>`` goes to
LABELS_SUFFIX = " labels"


class Cancelled(Exception):
    """Raised inside a worker (by the progress callback) when the user pressed Cancel."""


def fit_takes_scribbles(method: Any) -> bool:
    """Whether ``method``'s fit accepts ``unlabelled=`` (masks where 0 means unlabelled)."""
    if method.fit_func is None:
        return False
    if any(p.name == "unlabelled" for p in method.fit_params):
        return True
    arg = inspect.signature(method.fit_func).parameters.get("unlabelled")
    return arg is not None and arg.kind is not inspect.Parameter.VAR_KEYWORD


def _tooltip(p: Any, fit: bool) -> str:
    rng = p.describe()
    head = f"{p.name} ({p.type}{', ' + rng if rng else ''}; default {p.default!r})"
    return f"{head}{' - fit parameter' if fit else ''}\n{p.help}"


def param_widget(p: Any, *, fit: bool = False) -> Any:
    """The magicgui widget for one :class:`physeg.api.Param` (tooltip: type, range, help)."""
    label = p.name + (" (fit)" if fit else "")
    tip = _tooltip(p, fit)
    if p.type == "bool":
        w = CheckBox(value=bool(p.default), text="", label=label, tooltip=tip)
    elif p.choices:
        value = p.default if p.default in p.choices else p.choices[0]
        w = ComboBox(choices=list(p.choices), value=value, label=label, tooltip=tip)
    elif p.type == "int" and p.default is not None:
        lo = int(p.low) if p.low is not None else -(2**31 - 1)
        hi = int(p.high) if p.high is not None else 2**31 - 1
        # odd-only parameters (windows) step by 2 from an odd minimum: no even value offered
        w = SpinBox(value=int(p.default), min=lo, max=hi, step=2 if p.odd else 1, label=label,
                    tooltip=tip)
    else:
        # floats (whose ranges span decades) and "automatic" (None) defaults: a text field,
        # converted and checked by the schema when the work starts; empty = the default
        text = "" if p.default is None else repr(p.default) if p.type == "float" else str(
            p.default)
        w = LineEdit(value=text, label=label, tooltip=tip)
    w.name = ("fit__" if fit else "") + p.name
    return w


class _Relay:
    """Carries a worker thread's progress to the widget in the Qt main thread."""

    def __init__(self, slot: Callable[[int, Any, str], None]):
        from qtpy.QtCore import QObject, Signal

        class _Emitter(QObject):
            progressed = Signal(int, object, str)

        self._emitter = _Emitter()
        # emitted from the worker thread, delivered in the main thread (queued connection)
        self._emitter.progressed.connect(slot)

    def __call__(self, done: int, total: int | None, message: str) -> None:
        self._emitter.progressed.emit(int(done), total, str(message))


class PhysegWidget(Container):
    """The physeg dock widget (see the module notes); napari passes ``napari_viewer``."""

    def __init__(self, napari_viewer: Any):
        super().__init__(labels=True)
        from .. import api

        self.viewer = napari_viewer
        self.model: Any = None
        self.worker: Any = None
        self._cancel = threading.Event()
        self._job = 0
        self._methods = api.methods()
        self.method = ComboBox(choices=list(self._methods), value="heat" if "heat" in
                               self._methods else next(iter(self._methods)), label="method")
        self.summary = Label(value="", label="")
        # choices as callables: napari calls reset_choices() on its dock widgets whenever
        # the layer list changes, which re-reads them (a fixed list would be restored)
        self.image = ComboBox(choices=lambda _: self._layer_names("Image"), label="image",
                              tooltip="the Image layer to segment or to fit on")
        self.seed = SpinBox(value=0, min=0, max=2**31 - 1, label="seed",
                            tooltip="rng of every random step: the same seed, the same labels")
        self.params = Container(labels=True)
        self.segment_button = PushButton(text="Segment")
        self.mask_layer = ComboBox(choices=lambda _: self._layer_names("Labels"), label="labels",
                               tooltip="the Labels layer to fit on: scribbles (0 = unlabelled) "
                               "when the method's fit takes them, else a full mask")
        self.fit_button = PushButton(text="Fit from labels")
        self.apply_current = PushButton(text="Apply to this image")
        self.apply_all = PushButton(text="Apply to every image")
        self.save_button = PushButton(text="Save model...")
        self.load_button = PushButton(text="Load model...")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=1, label="progress")
        self.status = Label(value="", label="status")
        row = dict(layout="horizontal", labels=False)
        self.extend([self.method, self.summary, self.image, self.seed, self.params,
                     self.segment_button, self.mask_layer, self.fit_button,
                     Container(widgets=[self.apply_current, self.apply_all], label="model",
                               **row),
                     Container(widgets=[self.save_button, self.load_button], label="", **row),
                     self.progress, self.cancel_button, self.status])
        for text in (self.summary, self.status):
            text.native.setWordWrap(True)  # long summaries and errors wrap in the dock
        self.native.setMaximumWidth(480)  # leave the canvas its room
        self.method.changed.connect(self._build_params)
        self.segment_button.changed.connect(self.run_segment)
        self.fit_button.changed.connect(self.run_fit)
        self.apply_current.changed.connect(lambda: self.run_apply(every=False))
        self.apply_all.changed.connect(lambda: self.run_apply(every=True))
        self.save_button.changed.connect(self._save_dialog)
        self.load_button.changed.connect(self._load_dialog)
        self.cancel_button.changed.connect(self.cancel)
        self._relay = _Relay(self._on_progress)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_layers)
        self.viewer.layers.selection.events.active.connect(self._follow_selection)
        self._build_params()
        self._update_buttons()

    # ------------------------------------------------------------------ layers and params

    def _layer_names(self, kind: str) -> list[str]:
        return [layer.name for layer in self.viewer.layers if type(layer).__name__ == kind]

    def _refresh_layers(self, event: Any = None) -> None:
        for box in (self.image, self.mask_layer):
            current = box.value
            box.reset_choices()
            if current in box.choices:
                box.value = current

    def _follow_selection(self, event: Any = None) -> None:
        layer = self.viewer.layers.selection.active
        if layer is not None and type(layer).__name__ == "Image":
            if layer.name not in self.image.choices:  # selected before "inserted" arrived
                self._refresh_layers()
            self.image.value = layer.name

    def _build_params(self, event: Any = None) -> None:
        m = self._methods[self.method.value]
        self.params.clear()
        for p in m.params:
            self.params.append(param_widget(p))
        for p in m.fit_params:
            if p.name != "unlabelled":  # the widget's own business (module notes)
                self.params.append(param_widget(p, fit=True))
        flags = ["2D/3D" if m.supports_3d else "2D"] + [
            f for f, on in (("colour", m.supports_multichannel),
                            ("fits", m.fit_func is not None),
                            ("scribbles", fit_takes_scribbles(m))) if on]
        self.summary.value = f"{m.summary} [{', '.join(flags)}]"
        self.summary.tooltip = self.summary.value
        self._update_buttons()

    def values(self, *, fit: bool = False) -> dict[str, Any]:
        """The parameters the user changed from their defaults, converted by their Param:
        segmentation ones, or (``fit=True``) those of the fit (plus the segmentation ones of
        a method that also segments without a model). Only changed values are passed, as on
        the command line: a fit may refuse segmentation parameters it does not use."""
        m = self._methods[self.method.value]
        out: dict[str, Any] = {}
        for w in self.params:
            is_fit = w.name.startswith("fit__")
            if is_fit != fit and not (fit and m.func is not None):
                continue  # a model-only method's params belong to predict, not to fit
            name = w.name.removeprefix("fit__")
            value = w.value
            if isinstance(value, str) and not value.strip():
                continue  # empty text: the default
            value = m.param(name).convert(value)  # a bad entry: ValueError, in the status
            if value is not None and value != m.param(name).default:
                out[name] = value
        return out

    def _image_layer(self) -> Any:
        name = self.image.value
        if name is None or name not in self.viewer.layers:
            raise ValueError("no Image layer selected: open an image (File > Open Sample > "
                             "physeg) and pick it under 'image'.")
        return self.viewer.layers[name]

    # ------------------------------------------------------------------ running work

    def _prepare(self, layer: Any, method: Any, *, plane_ok: bool = False
                 ) -> tuple[np.ndarray, int | None, int | None]:
        """``(array, channel_axis, plane)`` for ``method``: a 3D layer goes whole to a 2D/3D
        method; to a 2D-only one, with ``plane_ok``, as the plane the viewer shows (``plane``
        its index), else it is refused."""
        from .._validate import prepare_colour

        data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
        arr = np.array(data, copy=True)  # the worker's own: the layer may change meanwhile
        arr, axis = prepare_colour(arr, method.supports_multichannel,
                                   channel_axis=-1 if layer.rgb else None)
        spatial = arr.ndim - (axis is not None)
        if spatial == 3 and not method.supports_3d:
            if not plane_ok:
                raise ValueError(f"{method.name} segments 2D images and {layer.name!r} is "
                                 "3D; choose a method marked 2D/3D.")
            step = layer.world_to_data(self.viewer.dims.point)[0]
            plane = int(np.clip(round(float(step)), 0, arr.shape[0] - 1))
            return arr[plane], axis, plane
        return arr, axis, None

    def _spacing(self, layer: Any, ndim: int) -> tuple[float, ...] | None:
        scale = tuple(float(s) for s in layer.scale[-ndim:])
        return None if all(s == 1.0 for s in scale) else scale

    def _start(self, func: Callable[[], Any], done: Callable[[Any], None], *,
               steps: bool, generator: bool = False, on_yield: Callable | None = None) -> None:
        from napari.qt.threading import create_worker

        if self.worker is not None:
            self._say("busy: wait for the running job or press Cancel.")
            return
        self._cancel.clear()
        self._job += 1
        job = self._job
        self.progress.min, self.progress.max, self.progress.value = 0, 1 if steps else 0, 0
        # errors are the status line's (errored below), not re-raised into napari's loop
        worker = create_worker(func, _start_thread=False, _ignore_errors=True)

        def finished() -> None:
            if self._job == job:
                self.worker = None
                self.cancel_button.enabled = False
                self.progress.max = max(self.progress.max, 1)
                if not self._cancel.is_set():
                    self.progress.value = self.progress.max
                self._update_buttons()

        def returned(result: Any) -> None:
            if self._job == job and not self._cancel.is_set():
                done(result)

        def errored(exc: BaseException) -> None:
            if self._job != job:
                return
            if isinstance(exc, Cancelled):
                self._say("cancelled.")
            elif isinstance(exc, (ValueError, TypeError, OSError)):  # the user's to fix
                self._say(f"error: {_one_line(exc)}")
            else:  # a bug: say what it was
                self._say(f"error: {type(exc).__name__}: {_one_line(exc)}")

        worker.returned.connect(returned)
        worker.errored.connect(errored)
        worker.finished.connect(finished)
        if generator and on_yield is not None:
            worker.yielded.connect(lambda item: self._job == job and on_yield(item))
        self.worker = worker
        self.cancel_button.enabled = True
        self._update_buttons()
        worker.start()

    def _on_progress(self, done: int, total: Any, message: str) -> None:
        if total:
            self.progress.max = int(total)
            self.progress.value = min(int(done), int(total))
        self._say(message)

    def _progress_callback(self, done: int, total: int | None, message: str) -> None:
        if self._cancel.is_set():
            raise Cancelled
        self._relay(done, total, message)

    def run_segment(self, event: Any = None) -> None:
        """Segment the selected image with the chosen method and parameters (a worker)."""
        from .. import api

        try:
            m = self._methods[self.method.value]
            layer = self._image_layer()
            arr, axis, plane = self._prepare(layer, m, plane_ok=True)
            params = m.validate(self.values())  # schema errors now, in the status line
            m.check_segments_without_model()
            spacing = self._spacing(layer, arr.ndim - (axis is not None))
        except (ValueError, TypeError) as exc:
            self._say(f"error: {_one_line(exc)}")
            return
        seed, name = int(self.seed.value), layer.name
        where = "" if plane is None else f" (plane {plane}: {m.name} is 2D only)"
        self._say(f"segmenting {name}{where} with {m.name} ...")

        def work() -> np.ndarray:
            return api.segment(arr, m.name, channel_axis=axis, spacing=spacing, rng=seed,
                               **params)

        self._start(work, lambda lab: self._put_labels(name, lab, m.name, plane=plane),
                    steps=False)

    def run_fit(self, event: Any = None) -> None:
        """Fit the chosen method on the selected Image and Labels layers (a worker)."""
        from .. import api

        try:
            m = self._methods[self.method.value]
            if m.fit_func is None:
                raise ValueError(f"{m.name} has nothing to fit; choose a method marked 'fits'.")
            layer = self._image_layer()
            if self.mask_layer.value is None or self.mask_layer.value not in self.viewer.layers:
                raise ValueError("no Labels layer selected: add one (the layer list's Labels "
                                 "button), paint on the image, and pick it under 'labels'.")
            arr, _, _ = self._prepare(layer, m)
            # a copy: painting on the layer while the worker fits must not change its input
            mask = np.array(self.viewer.layers[self.mask_layer.value].data, copy=True)
            params = self.values(fit=True)
            scribbles = fit_takes_scribbles(m)
            if scribbles:
                params["unlabelled"] = 0
                like = next((p for p in m.fit_params if p.name == "likelihood"), None)
                if like is not None and like.choices and "learned" in like.choices:
                    # as `physeg fit --scribbles`: strokes need the learned likelihood
                    params.setdefault("likelihood", "learned")
            if not np.any(mask):
                raise ValueError(f"{self.mask_layer.value!r} is empty: paint "
                                 f"{'strokes of each class' if scribbles else 'the object'} "
                                 "first.")
            m.validate(params, for_fit=True)
        except (ValueError, TypeError, KeyError) as exc:
            self._say(f"error: {_one_line(exc)}")
            return
        kind = "scribbles" if scribbles else "mask"
        self._say(f"fitting {m.name} on {layer.name} ({kind} {self.mask_layer.value}) ...")

        def work() -> Any:
            return api.fit(m.name, [arr], [mask], progress=self._progress_callback, **params)

        def done(model: Any) -> None:
            self.model = model
            self._say(f"fitted {m.name} on {layer.name}; apply it or save it.")
            self._update_buttons()

        self._start(work, done, steps=True)

    def run_apply(self, every: bool = False) -> None:
        """Segment the current (or every open) Image layer with the fitted or loaded model."""
        if self.model is None:
            self._say("error: no model yet: fit one (Fit from labels) or load one.")
            return
        from .. import api

        m = api.get_method(self.model.method)
        try:
            layers = ([la for la in self.viewer.layers if type(la).__name__ == "Image"]
                      if every else [self._image_layer()])
            inputs, skipped = [], []
            for la in layers:
                try:
                    arr, axis, _ = self._prepare(la, m)
                except ValueError:
                    if not every:
                        raise
                    skipped.append(la.name)  # e.g. a volume for a 2D model: said below
                    continue
                inputs.append((la.name, arr, axis))
            if not inputs:
                raise ValueError(f"no open image suits the {m.name} model (2D only: "
                                 f"{', '.join(skipped)} are 3D).")
        except ValueError as exc:
            self._say(f"error: {_one_line(exc)}")
            return
        model, total = self.model, len(inputs)
        note = f"; skipped (3D, the model is 2D): {', '.join(skipped)}" if skipped else ""

        def work():
            for i, (name, arr, axis) in enumerate(inputs):
                if self._cancel.is_set():
                    raise Cancelled
                self._relay(i, total, f"applying the model to {name} ({i + 1}/{total})")
                yield name, model.predict(arr, channel_axis=axis)
            self._relay(total, total, f"applied the model to {total} image(s){note}.")

        self._start(work, lambda _: None, steps=True, generator=True,
                    on_yield=lambda item: self._put_labels(item[0], item[1], model.method))

    def cancel(self, event: Any = None) -> None:
        """Stop the running job (module notes: when each kind of job can stop)."""
        if self.worker is None:
            return
        self._cancel.set()
        if hasattr(self.worker, "quit"):
            self.worker.quit()
        self._say("cancelling ...")

    # ------------------------------------------------------------------ results and files

    def _put_labels(self, image_name: str, labels: np.ndarray, method: str, *,
                    plane: int | None = None) -> None:
        name = image_name + LABELS_SUFFIX
        labels = np.asarray(labels)
        existing = (self.viewer.layers[name] if name in self.viewer.layers
                    and type(self.viewer.layers[name]).__name__ == "Labels" else None)
        if plane is not None and image_name in self.viewer.layers:
            # one plane of a volume: into that plane of a labels volume
            source = self.viewer.layers[image_name]
            depth = (source.data[0] if getattr(source, "multiscale", False)
                     else source.data).shape[0]
            shape = (depth,) + labels.shape
            volume = (np.array(existing.data, copy=True)
                      if existing is not None and existing.data.shape == shape
                      else np.zeros(shape, labels.dtype))
            volume[plane] = labels
            labels = volume
        if existing is not None:
            existing.data = labels
        else:
            source = self.viewer.layers[image_name] if image_name in self.viewer.layers else None
            kw = {} if source is None else {"scale": tuple(source.scale)[-labels.ndim:],
                                            "translate": tuple(source.translate)[-labels.ndim:]}
            self.viewer.add_labels(labels, name=name, **kw)
        found = len(np.unique(labels if plane is None else labels[plane]))
        where = "" if plane is None else f", plane {plane}"
        self._say(f"{method}: {name}{where} ({found} label{'s' if found != 1 else ''}).")

    def save_model(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the model to ``path`` (``.json``, or ``.pt`` for networks) with physeg.io:
        atomic, never over an existing file unless ``overwrite``."""
        import tempfile

        from ..io import atomic_write_bytes

        if self.model is None:
            raise ValueError("no model to save: fit one first.")
        path = Path(path)
        with tempfile.TemporaryDirectory(prefix="physeg-model-") as tmp:
            data = Path(self.model.save(Path(tmp) / ("model" + path.suffix))).read_bytes()
        out = atomic_write_bytes(path, data, overwrite=overwrite)
        self._say(f"saved the model to {out}.")
        return out

    def load_model(self, path: str | Path) -> Any:
        """Load a model written by physeg (``physeg.load``) to apply it."""
        from .. import api

        self.model = api.load(path)
        if self.model.method in self._methods:
            self.method.value = self.model.method
        self._say(f"loaded {self.model.method} model from {path}.")
        self._update_buttons()
        return self.model

    def _save_dialog(self, event: Any = None) -> None:
        from qtpy.QtWidgets import QFileDialog

        suffix = ".pt" if hasattr(self.model, "net") else ".json"
        path, _ = QFileDialog.getSaveFileName(self.native, "Save physeg model",
                                              f"model{suffix}", f"physeg model (*{suffix})")
        if path:
            try:  # the dialog asked before an existing file was chosen
                self.save_model(path, overwrite=True)
            except (ValueError, OSError) as exc:
                self._say(f"error: {_one_line(exc)}")

    def _load_dialog(self, event: Any = None) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self.native, "Load physeg model", "",
                                              "physeg model (*.json *.pt *.pth *.ckpt)")
        if path:
            try:
                self.load_model(path)
            except (ValueError, OSError) as exc:
                self._say(f"error: {_one_line(exc)}")

    def _update_buttons(self) -> None:
        idle = self.worker is None
        m = self._methods[self.method.value]
        self.segment_button.enabled = idle and m.func is not None
        self.fit_button.enabled = idle and m.fit_func is not None
        for b in (self.apply_current, self.apply_all, self.save_button):
            b.enabled = idle and self.model is not None
        self.load_button.enabled = idle

    def _say(self, text: str) -> None:
        self.status.value = text
        self.status.tooltip = text


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
