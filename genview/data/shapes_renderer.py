"""A view generator for the `shapes` dataset that knows the ground truth: it fills the roles of the diffusion
pipelines (unCLIP for IC and ITC views, text-to-image for TC views) by re-rendering a sample from attributes, and
records what each view kept.

It is called exactly like a diffusers pipeline (``pipeline(image=..., prompt=..., noise_level=..., guidance_scale=...,
generator=[...])``, ``.images``), so the generation stage, its seeding, batching and stamps are the same as with the
real models; the result also carries one record per view (the attributes it kept, its class), which the view
manifest stores. Its rules are the premises GenView++ rests on (docs/method.md, section 6), and they are inputs of
the embedded default, never results:

- **IC** (image, noise level n): each nuisance attribute of the source is redrawn with probability ``resample[n]``
  (more noise, more diverse views), and the class is lost with probability
  ``clip(rise_per_100 * (n - noise_per_share * share) / 100, 0, max)``, where ``share`` is the source object's share
  of the image: a small object is lost at a lower noise level than a large one, as unCLIP's noised image embedding
  keeps less of a small object. Noise chosen from the foreground ratio protects small objects and gives large ones
  diversity; noise chosen wrongly changes classes.
- **TC** (caption, guidance g): the attributes the caption states are rendered, each broken with probability
  ``floor + rise * ((g - best) / 6) ** 2``, where the best guidance falls with the number of attributes the caption
  states (``best_guidance``, interpolated: 6 up to two, 2 for seven): a short caption drifts at low guidance, a
  detailed one breaks at high guidance. What the caption does not state is drawn fresh, so a caption that does not
  name the shape gives a shape of any class.
- **ITC**: the IC rule from the source image, then the caption's stated attributes enforced as in TC.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from genview.data.shapes import COLORS, SHAPE_CLASSES, parse_caption, read_style, render, sample_attributes
from genview.errors import BadInputError

NUISANCES = ("size", "color", "texture", "position", "bg_color", "bg_texture", "outline")
DEFAULT_RULES = {
    "resample": {0: 0.5, 100: 0.6, 200: 0.7, 300: 0.8, 400: 0.9},
    "class_change": {"noise_per_share": 500.0, "rise_per_100": 0.4, "max": 0.95},
    "guidance_break": {"floor": 0.05, "rise": 0.45, "best_guidance": {2: 6.0, 7: 2.0}},
}


def class_change_probability(noise_level: float, share: float, rule: dict) -> float:
    """Chance that an IC view of an object covering ``share`` of the image loses its class at ``noise_level``."""
    excess = noise_level - rule["noise_per_share"] * share
    return float(np.clip(rule["rise_per_100"] * excess / 100, 0.0, rule["max"]))


def guidance_break_probability(guidance: float, stated: int, rule: dict) -> float:
    """Chance that a TC view breaks one stated attribute of a caption stating ``stated`` attributes."""
    best = _interpolate(rule["best_guidance"], stated)
    return float(np.clip(rule["floor"] + rule["rise"] * ((guidance - best) / 6) ** 2, 0.0, 1.0))


def _interpolate(table: dict, level: float) -> float:
    points = sorted((float(k), float(v)) for k, v in table.items())
    xs, ys = zip(*points)
    return float(np.interp(float(level), xs, ys))


def pixel_key(image) -> str:
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return hashlib.sha1(array.tobytes() + str(array.shape).encode()).hexdigest()


@dataclass
class RenderResult:
    images: list
    records: list = field(default_factory=list)


class ShapesRenderer:
    """``role`` unclip (IC, ITC) or text2img (TC); ``dataset_root`` the shapes folder (captions.csv, style.json)."""

    def __init__(self, role: str, dataset_root: str | Path, rules: dict | None = None):
        self.role = role
        self.root = Path(dataset_root)
        if not (self.root / "captions.csv").is_file():
            raise BadInputError(f"models.{role}: no shapes dataset at {self.root} (captions.csv missing)")
        self.image_size, self.style = read_style(self.root)
        self.rules = {name: {**DEFAULT_RULES[name], **(rules or {}).get(name, {})} for name in DEFAULT_RULES}
        self._attributes: dict[str, dict] | None = None

    def set_progress_bar_config(self, **_) -> None:  # the diffusers pipelines' interface
        pass

    def to(self, _device):
        return self

    # --- the source image's ground truth --------------------------------------------------------------------
    def attributes_of(self, image) -> dict:
        if self._attributes is None:
            from PIL import Image

            rows = pd.read_csv(self.root / "captions.csv", dtype=str, keep_default_na=False)
            self._attributes = {}
            for row in rows.to_dict("records"):
                with Image.open(self.root / row["image"]) as source, Image.open(self.root / row["mask"]) as mask:
                    share = float((np.asarray(mask) > 127).mean())
                    self._attributes[pixel_key(source)] = {key: row[key] for key in ("label", *NUISANCES)} | {
                        "share": share
                    }
        key = pixel_key(image)
        if key not in self._attributes:
            raise BadInputError(f"models.{self.role}: an image that is not in the shapes dataset {self.root}")
        return dict(self._attributes[key])

    # --- one view --------------------------------------------------------------------------------------------
    def _from_image(self, source: dict, noise_level: float, rng: np.random.Generator) -> dict:
        fresh = sample_attributes(source["label"], rng, self.style)
        view = {key: value for key, value in source.items() if key != "share"}
        p = _interpolate(self.rules["resample"], noise_level)
        for attribute in NUISANCES:
            if rng.random() < p:
                view[attribute] = fresh[attribute]
        if rng.random() < class_change_probability(noise_level, source["share"], self.rules["class_change"]):
            view["label"] = str(rng.choice([c for c in SHAPE_CLASSES if c != source["label"]]))
        return view

    def _with_caption(self, view: dict, caption: str, guidance: float, rng: np.random.Generator) -> dict:
        stated = parse_caption(caption)
        p_break = guidance_break_probability(guidance, len(stated), self.rules["guidance_break"])
        for attribute, value in stated.items():
            view[attribute] = value if rng.random() >= p_break else view[attribute]
        if view["bg_color"] == view["color"]:  # the set never paints an object in its background's colour
            view["bg_color"] = str(rng.choice([c for c in COLORS if c != view["color"]]))
        return view

    def __call__(
        self,
        image=None,
        prompt=None,
        noise_level=None,
        guidance_scale=10.0,
        generator=None,
        num_inference_steps=None,
        output_type="pil",
        **_,
    ):
        count = len(generator) if isinstance(generator, list) else len(image if isinstance(image, list) else prompt)
        images = image if isinstance(image, list) else [image] * count
        prompts = prompt if isinstance(prompt, list) else [prompt or ""] * count
        generators = generator if isinstance(generator, list) else [generator] * count
        results, records = [], []
        for index in range(count):
            rng = np.random.default_rng(int(generators[index].initial_seed()) if generators[index] is not None else 0)
            if self.role == "unclip":
                source = self.attributes_of(images[index])
                view = self._from_image(source, noise_level or 0, rng)
                if prompts[index]:
                    view = self._with_caption(view, prompts[index], guidance_scale, rng)
            else:
                source = None  # a fresh sample of any class, then the caption's stated attributes
                view = sample_attributes(str(rng.choice(SHAPE_CLASSES)), rng, self.style)
                view = self._with_caption(view, prompts[index], guidance_scale, rng)
            picture, _ = render(view, self.image_size, rng, self.style)
            results.append(picture)
            reference = source if source is not None else parse_caption(prompts[index])
            records.append(
                {
                    "view_label": view["label"],
                    "kept_attributes": ";".join(
                        k for k in ("label", *NUISANCES) if k in reference and reference[k] == view[k]
                    ),
                }
            )
        return RenderResult(results, records)
