"""The stateless tools: called directly, through gradio_client, and as MCP tools by a real MCP
client over streamable HTTP against the running app (`--mcp`)."""
from __future__ import annotations

import asyncio
import base64
import shutil
from pathlib import Path

import gradio as gr
import pytest
from gradio.data_classes import FileData
from PIL import Image

from demo.ui.tools import Tools
from tests.demo.conftest import class_zip, start_app

SUPPORT = {"computed tomography": ["CT_small.dcm", "693_UNCR.dcm"],
           "magnetic resonance": ["MR_small.dcm", "MR2_UNCR.dcm"]}
CLASSES = "computed tomography, magnetic resonance"


def copy(name: str, folder: Path) -> str:
    from pydicom.data import get_testdata_file

    target = folder / name.replace(".dcm", "")
    shutil.copy(get_testdata_file(name), target)
    return str(target)


def support_zip(folder: Path) -> str:
    return class_zip(folder / "support.zip", SUPPORT)


def nifti(folder: Path) -> str:
    """A small NIfTI volume: 8 slices of 32x32, each a different picture."""
    import nibabel as nib
    import numpy as np

    y, x = np.mgrid[:32, :32]
    volume = np.stack([np.sin(x * (k + 1) / 6) + (y > 4 * k) for k in range(8)], axis=-1)
    path = folder / "volume.nii.gz"
    nib.Nifti1Image(volume.astype(np.float32), np.eye(4)).to_filename(path)
    return str(path)


def multi_frame(folder: Path) -> str:
    return copy("emri_small.dcm", folder)  # 10 frames


def png(folder: Path) -> str:
    """A 2-D picture: a grey disc on black."""
    import numpy as np

    y, x = np.mgrid[:64, :64]
    path = folder / "picture.png"
    Image.fromarray(np.where((x - 32) ** 2 + (y - 28) ** 2 < 400, 180, 0).astype(np.uint8)
                    ).save(path)
    return str(path)


def assert_per_slice(rows: list[dict], n: int) -> None:
    """One entry per slice, numbered 0..n-1, each with probabilities summing to 1."""
    assert [r["slice"] for r in rows] == list(range(n))
    for r in rows:
        assert set(r["probabilities"]) == set(SUPPORT)
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


@pytest.fixture
def tools(studio):
    return Tools(studio)


def test_zero_shot_classifies_and_deletes_what_it_was_given(tools, tmp_path):
    scan = copy("CT_small.dcm", tmp_path)
    probs = tools.classify_zero_shot(FileData(path=scan), CLASSES, "a {} photo.")
    assert set(probs) == {"computed tomography", "magnetic resonance"}
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert not Path(scan).exists()


@pytest.mark.parametrize("method", ["biomed-dpt", "zero-shot", "tip-adapter", "linear-probe"])
def test_few_shot_learns_from_a_zip_of_class_folders(tools, tmp_path, method):
    probs = tools.classify_few_shot(FileData(path=support_zip(tmp_path)),
                                    FileData(path=copy("MR_small_padded.dcm", tmp_path)), method)
    assert set(probs) == set(SUPPORT) and sum(probs.values()) == pytest.approx(1.0, abs=1e-5)


def test_the_same_call_gives_the_same_answer(tools, tmp_path):
    """Nothing is kept between calls: a second identical call is not influenced by the first."""
    one = tools.classify_few_shot(FileData(path=support_zip(tmp_path)),
                                  FileData(path=copy("MR_small_padded.dcm", tmp_path)))
    two = tools.classify_few_shot(FileData(path=support_zip(tmp_path)),
                                  FileData(path=copy("MR_small_padded.dcm", tmp_path)))
    assert one == pytest.approx(two, abs=1e-6)


def test_prompts_files_classify_and_explain(studio, tools, tmp_path):
    from tests.demo.ui.test_handlers import prompts_file, ready_session

    session = ready_session(studio, tmp_path, tune=False)
    saved = prompts_file(studio.tune(session, "fast", 12.5, 0.25, 10, 1, 1,
                                     progress=lambda *a, **k: None))
    scan = copy("MR_small_padded.dcm", tmp_path)
    expected = studio.predict(session, scan, "auto")["tuned_label"]
    prompts = tmp_path / "p.safetensors"
    shutil.copy(saved, prompts)
    probs = tools.classify_with_prompts(FileData(path=str(prompts)),
                                        FileData(path=copy("MR_small_padded.dcm", tmp_path)))
    assert probs == pytest.approx(expected, abs=1e-5)
    shutil.copy(saved, prompts)
    rows = tools.classify_with_prompts(FileData(path=str(prompts)),
                                       FileData(path=nifti(tmp_path)), slices="all")
    assert_per_slice(rows, 8)
    shutil.copy(saved, prompts)
    middle = tools.classify_with_prompts(FileData(path=str(prompts)),
                                         FileData(path=nifti(tmp_path)))
    assert middle == pytest.approx(rows[4]["probabilities"], abs=1e-5)
    shutil.copy(saved, prompts)
    made = tools.explain(FileData(path=copy("MR_small_padded.dcm", tmp_path)),
                         class_name="computed tomography", prompts=FileData(path=str(prompts)))
    assert Image.open(made.path).size == (224, 224)


@pytest.mark.parametrize("scan, n", [(nifti, 8), (multi_frame, 10)])
def test_a_volume_is_classified_slice_by_slice_or_at_its_middle_slice(tools, tmp_path, scan, n):
    rows = tools.classify_zero_shot(FileData(path=scan(tmp_path)), CLASSES, slices="all")
    assert_per_slice(rows, n)
    assert len({r["probabilities"]["computed tomography"] for r in rows}) > 1  # slices differ
    middle = tools.classify_zero_shot(FileData(path=scan(tmp_path)), CLASSES)
    assert middle == pytest.approx(rows[n // 2]["probabilities"], abs=1e-5)


@pytest.mark.parametrize("method", ["biomed-dpt", "zero-shot", "tip-adapter", "linear-probe"])
def test_few_shot_classifies_each_slice_of_a_volume(tools, tmp_path, method):
    rows = tools.classify_few_shot(FileData(path=support_zip(tmp_path)),
                                   FileData(path=nifti(tmp_path)), method, slices="all")
    assert_per_slice(rows, 8)
    assert len({r["probabilities"]["computed tomography"] for r in rows}) > 1  # slices differ
    middle = tools.classify_few_shot(FileData(path=support_zip(tmp_path)),
                                     FileData(path=nifti(tmp_path)), method)
    assert middle == pytest.approx(rows[4]["probabilities"], abs=1e-5)


def test_a_single_picture_is_slice_0_of_all(tools, tmp_path):
    rows = tools.classify_zero_shot(FileData(path=png(tmp_path)), CLASSES, slices="all")
    assert_per_slice(rows, 1)
    alone = tools.classify_zero_shot(FileData(path=png(tmp_path)), CLASSES)
    assert alone == pytest.approx(rows[0]["probabilities"], abs=1e-5)


@pytest.mark.parametrize("call, message", [
    (lambda t, d: t.classify_zero_shot(FileData(path=copy("CT_small.dcm", d)), "cyst"),
     "at least two classes"),
    (lambda t, d: t.classify_few_shot(FileData(path=support_zip(d)),
                                      FileData(path=copy("CT_small.dcm", d)), "magic"),
     "not one this app offers"),
    (lambda t, d: t.classify_zero_shot(FileData(path=str(d / "missing.png")), CLASSES),
     "could not be found"),
    (lambda t, d: t.classify_zero_shot(FileData(path=nifti(d)), CLASSES, slices="every"),
     'can be "middle" .* or "all" .*, not .*every'),
    (lambda t, d: t.classify_few_shot(FileData(path=support_zip(d)),
                                      FileData(path=nifti(d)), "zero-shot", slices="5"),
     'can be "middle" .* or "all"'),
])
def test_bad_input_is_an_error_a_person_understands(tools, tmp_path, call, message):
    with pytest.raises(gr.Error, match=f"(?i){message}"):
        call(tools, tmp_path)


# ---- the running app: an MCP client over streamable HTTP -----------------------------------
@pytest.fixture(scope="module")
def mcp_url(tmp_path_factory):
    yield from start_app(tmp_path_factory.mktemp("mcp") / "app.log", "--mcp")


def data_uri(path: str, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(Path(path).read_bytes()).decode()


async def _session_calls(url: str, folder: Path) -> dict:
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    out = {}
    async with streamablehttp_client(url + "gradio_api/mcp/") as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            listed = await session.list_tools()
            out["tools"] = {t.name: t for t in listed.tools}
            scan = data_uri(copy("CT_small.dcm", folder), "application/dicom")
            out["zero"] = await session.call_tool("classify_zero_shot", {
                "image": scan, "classes": CLASSES, "template": "a {} photo."})
            out["few"] = await session.call_tool("classify_few_shot", {
                "support_set": data_uri(support_zip(folder), "application/zip"),
                "image": data_uri(copy("MR_small_padded.dcm", folder), "application/dicom"),
                "method": "linear-probe"})
            out["slices"] = await session.call_tool("classify_zero_shot", {
                "image": data_uri(multi_frame(folder), "application/dicom"),
                "classes": CLASSES, "slices": "all"})
            out["explain"] = await session.call_tool("explain", {
                "image": scan, "classes": CLASSES})
            out["bad"] = await session.call_tool("classify_zero_shot", {
                "image": scan, "classes": "only one"})
    return out


def _payload(result) -> dict | list:
    """The tool's answer (Gradio writes a dict or list result as its Python literal)."""
    import ast

    texts = [c.text for c in result.content if getattr(c, "type", "") == "text"]
    return ast.literal_eval(texts[0])


def test_an_mcp_client_lists_and_calls_the_tools(mcp_url, tmp_path):
    out = asyncio.run(_session_calls(mcp_url, tmp_path))
    tools = out["tools"]
    assert set(tools) == set(Tools.names)  # the session-stateful steps are not tools
    schema = tools["classify_few_shot"].inputSchema["properties"]
    assert {"support_set", "image", "method", "template"} <= set(schema)
    assert "one folder per class" in schema["support_set"].get("description", "")
    assert "few labelled examples" in tools["classify_few_shot"].description
    zero = _payload(out["zero"])
    assert set(zero) == set(SUPPORT) and sum(zero.values()) == pytest.approx(1.0, abs=1e-4)
    few = _payload(out["few"])
    assert set(few) == set(SUPPORT) and sum(few.values()) == pytest.approx(1.0, abs=1e-4)
    assert '"all"' in tools["classify_zero_shot"].inputSchema["properties"]["slices"].get(
        "description", "")
    assert [r["slice"] for r in _payload(out["slices"])] == list(range(10))
    images = [c for c in out["explain"].content if getattr(c, "type", "") == "image"]
    assert images and images[0].mimeType == "image/png"
    picture = Image.open(__import__("io").BytesIO(base64.b64decode(images[0].data)))
    assert picture.size == (224, 224)
    assert out["bad"].isError and "at least two classes" in str(out["bad"].content)


def test_the_step_endpoints_stay_callable_with_mcp(mcp_url):
    from gradio_client import Client

    client = Client(mcp_url, verbose=False)
    info = client.view_api(return_format="dict", print_info=False)
    assert set(info["named_endpoints"]) == {"/" + n for n in Tools.names}
    out = client.predict("CT", "kidney", "a {} photo.",
                         {"headers": ["class", "descriptions"],
                          "data": [["cyst", ""], ["stone", ""]]}, 12.5, 0.25,
                         api_name="/set_task")
    assert "2 classes" in out[0]
