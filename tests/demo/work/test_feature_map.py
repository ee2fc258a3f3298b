"""The map of the examples (demo/work/feature_map.py): PCA of known points, points drawn where
they are, and a click finding its scan."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from demo.work.feature_map import draw_map, nearest_point, project
from demo.work.report import PLOT_COLOURS
from demo.work.scans import Example, new_uid


def scans(label: str, n: int) -> list[Example]:
    picture = Image.new("RGB", (8, 8))
    return [Example(new_uid(), label, picture, picture, f"{label or 'u'} #{i}", str(i))
            for i in range(n)]


def test_pca_finds_the_directions_the_features_vary_most():
    """Points on a line along axis 3 with a little spread on axis 5: the first coordinate is
    their position on the line, the second the spread."""
    t = torch.linspace(-2, 2, 9)
    feats = torch.zeros(9, 8)
    feats[:, 3] = t
    feats[:, 5] = 0.1 * (t ** 2 - (t ** 2).mean())  # a spread uncorrelated with the line
    coords = project(feats + 5.0)  # an offset changes nothing: centred
    np.testing.assert_allclose(np.abs(coords[:, 0]), np.abs(t.numpy()), atol=1e-5)
    np.testing.assert_allclose(np.abs(coords[:, 1]), np.abs(feats[:, 5].numpy()), atol=1e-5)
    assert project(torch.zeros(0, 4)).shape == (0, 2) and project(torch.ones(1, 4)).shape == (1, 2)


def test_every_scan_is_drawn_where_its_point_says_and_a_click_finds_it():
    classes = ["cyst", "stone"]
    examples = scans("cyst", 3) + scans("stone", 3)
    pool = scans("", 2)
    generator = torch.Generator().manual_seed(0)
    feats = torch.randn(8, 16, generator=generator)
    feats[3:6] += 4  # the stones apart
    picture, points = draw_map([("example", examples), ("test", []), ("pool", pool)], feats,
                               classes, shown=feats[7] + 0.01)  # over a pool scan
    assert [p.kind for p in points] == ["example"] * 6 + ["pool"] * 2 + ["shown"]
    pixels = np.asarray(picture).astype(int)
    for p in points[:6]:  # each example's dot is drawn in its class's colour where it says
        colour = np.array(Image.new("RGB", (1, 1), PLOT_COLOURS[classes.index(p.label)])
                          ).reshape(3)
        near = pixels[int(p.y) - 2:int(p.y) + 3, int(p.x) - 2:int(p.x) + 3]
        assert (np.abs(near - colour).sum(axis=2) < 60).any(), p
    hit = nearest_point(points, points[4].x + 3, points[4].y - 2)
    assert hit is not None and hit.uid == examples[4].uid
    assert nearest_point(points, -500, -500) is None


def test_a_map_of_nothing_is_refused_with_a_reason(studio):
    from demo.text.messages import UserError
    from demo.work.session import Session

    session = Session()
    studio.set_task(session, "CT", None, "a {} photo.", [["a", ""], ["b", ""]], 12.5, 0.25)
    with pytest.raises(UserError) as err:
        session.feature_map(studio.model_info())
    assert err.value.key == "map_empty"
