"""A real browser (Debian's chromium driven by Playwright) runs the whole workflow by clicking, as
a clinician and a teacher would, in English and in Korean, and checks what the page shows: text,
drawn curves and maps, the files it downloads. Screenshots of every step go to out/."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from demo.text.messages import text
from tests.demo.browser import (CHROMIUM, ENGLISH_WORD, FLAGS, answer_after,
                                choose, colour_share, fill_cell, options_of,
                                picture_in, predict_example_picture, shot,
                                text_of, use_sample_scans, wait_text)
from tests.demo.conftest import class_zip, real_scan

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                "(apt-get install chromium); .ci/run installs it")

# Four classes, four distinct real DICOM scans each (pydicom's and pydicom-data's test files).
CLASSES = ["computed tomography", "magnetic resonance", "ultrasound", "radiograph"]
TRAINING = {
    CLASSES[0]: ["CT_small.dcm", "693_UNCR.dcm", "explicit_VR-UN.dcm", "J2K_pixelrep_mismatch.dcm"],
    CLASSES[1]: ["emri_small.dcm", "MR_small.dcm", "MR2_UNCR.dcm",
                 "MR-SIEMENS-DICOM-WithOverlays.dcm"],
    CLASSES[2]: ["US1_UNCR.dcm", "OBXXXX1A_rle.dcm", "examples_palette.dcm", "ExplVR_BigEnd.dcm"],
    CLASSES[3]: ["RG3_J2KI.dcm", "RG1_J2KI.dcm", "RG3_UNCR.dcm", "RG1_UNCR.dcm"],
}
# Test scans: RG3_J2KR is RG3_UNCR losslessly re-encoded (the same picture as an example).
TESTS = {CLASSES[0]: ["693_J2KI.dcm"], CLASSES[1]: ["MR2_UNCI.dcm"],
         CLASSES[2]: ["US1_J2KI.dcm"], CLASSES[3]: ["RG3_J2KR.dcm"]}
UI = {  # static labels as each language shows them (demo/text/strings.py)
    "en": {"template": "Clinical template ({} is where the class name goes)",
           "apply": "Use this task", "tab2": "2 · Examples", "tab3": "3 · Tune",
           "tab4": "4 · Predict", "tab5": "5 · Evaluate", "tab6": "6 · Save / load",
           "belongs": "These examples belong to", "add": "Add examples",
           "remove": "Remove selected example", "tune": "Tune prompts", "predict": "Predict",
           "explain": "Explain class", "window": "Window", "evaluate": "Evaluate",
           "add_test": "Add to the test set", "test_class": "Class of these scans",
           "modality": "Modality"},
    "ko": {"template": "임상 템플릿 ({} 자리에 클래스 이름이 들어갑니다)",
           "apply": "이 과제 사용", "tab2": "2 · 예시", "tab3": "3 · 튜닝", "tab4": "4 · 예측",
           "tab5": "5 · 평가", "tab6": "6 · 저장 / 불러오기", "belongs": "이 예시들의 클래스",
           "add": "예시 추가", "remove": "선택한 예시 삭제", "tune": "프롬프트 튜닝",
           "predict": "예측", "explain": "설명할 클래스", "window": "창(window)",
           "evaluate": "평가", "add_test": "평가 세트에 추가",
           "test_class": "이 영상들의 클래스", "modality": "영상 종류"},
}
TEMPLATE = "a {} photo."
# Words that may appear in server text in any language: what the user typed, units, names.
ALLOWED = {w.lower() for c in CLASSES for w in c.split()} | {
    "photo", "tiny", "biomedclip", "fp32", "bf16", "loss", "png", "dcm", "txt", "notes",
    # names of file formats
    "dicom", "jpeg", "tiff", "bmp", "nifti", "nii", "metaimage", "mha", "nrrd", "zip", "analyze",
    "hdr", "img", "mgh", "mgz",
    # names of methods
    "biomed", "dpt", "tip", "adapter"}


def _browser(p, locale: str):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale=locale,
                                  accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    return browser, context, page


def _server_text_is_korean(page, selectors) -> None:
    for selector in selectors:
        words = {w.lower() for w in ENGLISH_WORD.findall(text_of(page, selector))}
        assert not words - ALLOWED, (selector, words - ALLOWED)


def _test_zip(folder) -> str:
    return class_zip(folder / "held-out.zip", TESTS, top="test")


def _highlighted(page) -> dict[int, list[int]]:
    """Card number -> the positions of its highlighted thumbnails (cards with none left out)."""
    return {int(k): v for k, v in page.evaluate("""() => {
        const out = {};
        document.querySelectorAll('.card-gallery').forEach(g => {
            const on = [...g.querySelectorAll('.thumbnail-item')].flatMap(
                (e, i) => e.classList.contains('selected') ? [i] : []);
            if (on.length) out[g.id.split('-')[1]] = on;
        });
        return out;
    }""").items()}


def _download(page, selector: str, folder, name: str):
    with page.expect_download() as info:
        page.locator(selector).click()
    download = info.value
    target = folder / name
    download.save_as(target)
    return download.suggested_filename, target


@pytest.mark.parametrize("lang, locale", [("en", "en-US"), ("ko", "ko-KR")])
def test_whole_workflow_in_a_real_browser(app_url, tmp_path, lang, locale):
    from playwright.sync_api import expect, sync_playwright

    from core import presets

    ui = UI[lang]
    with sync_playwright() as p:
        browser, context, page = _browser(p, locale)
        page.goto(app_url)
        wait_text(page, "#model-status", "tiny-biomedclip")
        shot(page, f"{lang}-1-start")

        # 1. Task: modality "other", four classes typed into the class table
        choose(page, ui["modality"], "other" if lang == "en" else "기타")
        template = page.get_by_label(ui["template"])
        # the modality's own template arrives first; then the teacher types theirs
        expect(template).to_have_value(presets.template_for("other", "head"))
        template.fill(TEMPLATE)
        for row, name in enumerate(CLASSES):
            fill_cell(page, row, 0, name)
        fill_cell(page, 0, 1, "bone is bright")  # a description, typed into its cell
        assert "bone is bright" in text_of(page, "#class-table")
        page.get_by_role("button", name=ui["apply"]).click()
        status = wait_text(page, "#task-status", "4")
        assert text(lang, "task_set", n=4, classes=", ".join(CLASSES)) in status
        shot(page, f"{lang}-2-task")

        # 2. Examples: four real DICOM files (no extension) per class; window choices fit the
        # task (no CT presets outside CT); a text file is reported by its own name; the same
        # scan twice is skipped
        page.get_by_role("tab", name=ui["tab2"]).click()
        windows = options_of(page, ui["window"])
        assert text(lang, "w_auto") in windows and not any("CT" in w for w in windows)
        for label, names in TRAINING.items():
            choose(page, ui["belongs"], label)
            paths = [real_scan(n, tmp_path) for n in names]
            if label == CLASSES[0]:
                (tmp_path / "notes.txt").write_text("not a scan")
                paths += [str(tmp_path / "notes.txt"), real_scan("693_J2KR.dcm", tmp_path)]
            page.locator("#example-files input[type=file]").set_input_files(paths)
            if label in CLASSES[:2]:
                page.locator("#example-preview img").wait_for()  # the scan viewer
            if label == CLASSES[1]:  # a 10-frame MR: the viewer offers a slider
                page.locator("#example-frame").wait_for()
                wait_text(page, "#example-preview-text", "0–9")
                shot(page, f"{lang}-3-viewer")
            page.get_by_role("button", name=ui["add"]).click()
            status = wait_text(page, "#example-status", label, timeout=90_000)
            assert text(lang, "added_examples", n=4, label=label) in status
            if label == CLASSES[0]:
                assert "notes.txt" in status and "693_J2KR" in status
                assert text(lang, "duplicate_of", other=f"{CLASSES[0]} #2") in status
                if lang == "ko":  # the reader's own message about notes.txt too
                    _server_text_is_korean(page, ["#example-status"])
                shot(page, f"{lang}-3-examples-problems")
        counts = text_of(page, "#example-counts")
        assert all(f"{c}: 4" in counts for c in CLASSES)
        # one card per class: its name, count and thumbnails
        thumbnails = page.locator(".card-gallery .thumbnail-item")
        page.wait_for_function(  # the cards are drawn again after each change
            "() => document.querySelectorAll('.card-gallery .thumbnail-item').length === 16")
        for i, label in enumerate(CLASSES):
            assert text_of(page, f"#card-{i}-title").startswith(f"{label} · 4")
            assert page.locator(f"#card-{i}-gallery .thumbnail-item").count() == 4
        box = thumbnails.first.bounding_box()
        assert box["width"] < 220 and box["height"] < 220  # thumbnails, not blown up

        # a thumbnail click selects it, and its card's Remove removes it; the card's own
        # upload area refills the class
        page.locator("#card-1-gallery .thumbnail-item").first.click()
        wait_text(page, "#example-status", CLASSES[1] + " #1")
        page.locator("#card-1-remove").click()
        wait_text(page, "#example-status", text(lang, "removed", name=CLASSES[1] + " #1"))
        assert f"{CLASSES[1]}: 3" in text_of(page, "#example-counts")
        page.wait_for_function(
            "() => document.querySelectorAll('.card-gallery .thumbnail-item').length === 15")
        assert text_of(page, "#card-1-title").startswith(f"{CLASSES[1]} · 3")
        assert _highlighted(page) == {}  # no neighbour takes the removed one's highlight
        # the one highlight is the selection; a card's Remove removes only its own examples
        page.locator("#card-0-gallery .thumbnail-item").nth(1).click()
        wait_text(page, "#example-status", CLASSES[0] + " #2")
        page.locator("#card-1-gallery .thumbnail-item").first.click()
        wait_text(page, "#example-status", CLASSES[1] + " #2")
        page.wait_for_function("() => document.querySelectorAll("
                               "'#card-0-gallery .thumbnail-item.selected').length === 0")
        assert _highlighted(page) == {1: [0]}
        page.locator("#card-0-remove").click()
        wait_text(page, "#example-status", text(lang, "select_in_card", label=CLASSES[0]))
        assert f"{CLASSES[0]}: 4" in text_of(page, "#example-counts")
        shot(page, f"{lang}-4-examples")
        page.locator("#card-1-files input[type=file]").set_input_files(
            real_scan("emri_small.dcm", tmp_path))
        wait_text(page, "#example-status", text(lang, "added_example", label=CLASSES[1]))
        page.wait_for_function(
            "() => document.querySelectorAll('#card-1-gallery .thumbnail-item').length === 4")
        # the examples' features are prepared as they arrive, with progress in this step
        wait_text(page, "#features-status", text(lang, "features_ready"), timeout=60_000)
        shot(page, f"{lang}-4b-features")

        # 3. Tune: the curve is drawn with numeric axes while tuning and after
        page.get_by_role("tab", name=ui["tab3"]).click()
        page.get_by_role("button", name=ui["tune"]).click()
        wait_text(page, "#tune-status", text(lang, "how_finished"), timeout=180_000)
        curve = picture_in(page, "#training-curve")
        assert colour_share(curve, "#1f5fbf") > 0.002 and colour_share(curve, "#e07b00") > 0.002
        # then the held-out estimate in its own line: a row per method, below the labelled
        # training accuracy
        title = text(lang, "estimate_title", folds=4, n=16, recipe="").split("**")[1]
        estimate = wait_text(page, "#estimate-status", title, timeout=180_000)
        assert text(lang, "train_accuracy_note")[:30] in text_of(page, "#tune-status")
        for method in ("tuned", "zero-shot", "tip-adapter", "linear-probe"):
            assert text(lang, f"method_{method}") in estimate
        assert page.locator("#estimate-status table tr").count() == 5  # header + 4 methods
        shot(page, f"{lang}-5-tuned")

        # 4. Predict: probabilities, the scan beside its map, the map of another class, and a
        # report downloaded with one click that is the report of the scan on screen
        page.get_by_role("tab", name=ui["tab4"]).click()
        reports = {}
        for name in ("MR_small_padded.dcm", "eCT_Supplemental.dcm"):
            if reports:  # replace the scan: clear the box, choose the next one
                page.locator("#predict-scan").get_by_role(
                    "button", name="Clear" if lang == "en" else "지우기").click()
            page.locator("#predict-scan input[type=file]").set_input_files(
                real_scan(name, tmp_path))
            answer_after(page, "#predict-status",
                         page.get_by_role("button", name=ui["predict"], exact=True).click)
            page.locator("#attention-map img").wait_for()
            page.locator("#scan-view img").wait_for()
            shown = text_of(page, "#tuned-probs")
            assert "%" in text_of(page, "#baseline-probs")  # the baseline beside the tuned
            page.locator("#nearest .thumbnail-item").nth(2).wait_for()
            assert page.locator("#nearest .thumbnail-item").count() == 3
            page.wait_for_timeout(300)  # a person's reaction time, no more
            suggested, saved = _download(page, "#report", tmp_path, f"report-{name}.png")
            assert suggested.startswith("biomed-dpt-report_") and suggested.endswith(".png")
            facts = json.loads(Image.open(saved).text["biomed-dpt-report"])
            top = max(facts["tuned"], key=facts["tuned"].get)
            assert top in shown and f"{facts['tuned'][top]:.0%}" in shown
            assert facts["model"] == "tiny-biomedclip" and facts["demo_model"] is True
            assert facts["classes"] == CLASSES and facts["template"] == TEMPLATE
            reports[name] = facts
        assert reports["MR_small_padded.dcm"]["scan"] != reports["eCT_Supplemental.dcm"]["scan"]
        before = picture_in(page, "#attention-map")
        other = [c for c in CLASSES if c != facts["explained"]][0]
        choose(page, ui["explain"], other)
        for _ in range(40):
            if picture_in(page, "#attention-map").tobytes() != before.tobytes():
                break
            page.wait_for_timeout(250)
        assert picture_in(page, "#attention-map").tobytes() != before.tobytes()
        page.wait_for_timeout(500)
        _, saved = _download(page, "#report", tmp_path, "report-switched.png")
        assert json.loads(Image.open(saved).text["biomed-dpt-report"])["explained"] == other
        shot(page, f"{lang}-6-predict")

        # 5. Evaluate: a zip of class folders; per-class precision; a warning that one test
        # scan is also an example; confusion matrices drawn
        page.get_by_role("tab", name=ui["tab5"]).click()
        assert page.get_by_label(ui["test_class"], exact=True).first.input_value() == CLASSES[0]
        page.locator("#test-zip input[type=file]").set_input_files(_test_zip(tmp_path))
        page.get_by_role("button", name=ui["add_test"]).click()
        wait_text(page, "#test-status", text(lang, "added_tests", n=4))
        page.get_by_role("button", name=ui["evaluate"], exact=True).click()
        status = wait_text(page, "#eval-status", "%")
        assert text(lang, "overlap", n=1) in status
        table = text_of(page, "#metrics")
        assert text(lang, "m_precision", name=CLASSES[0]) in table
        for column in ("col_zero", "col_tip-adapter", "col_linear-probe", "col_tuned"):
            assert text(lang, column) in table
        page.locator("#confusion-tuned img").wait_for()
        shot(page, f"{lang}-7-evaluate")

        # ... and leads back to the scans: a cell's scans with maps; one becomes an example
        page.locator("#cell-gallery .thumbnail-item").first.wait_for()
        page.locator("#cell-gallery .thumbnail-item").first.click()
        wait_text(page, "#cell-status", text(lang, "cell_selected", true="X").split("X")[1][:8])
        before = text_of(page, "#example-counts")
        page.locator("#promote").click()
        promoted = wait_text(page, "#cell-status", "#")
        assert text_of(page, "#example-counts") != before or "⚠️" in promoted
        shot(page, f"{lang}-7b-cell")

        # 6. Save: one click downloads these prompts
        page.get_by_role("tab", name=ui["tab6"]).click()
        suggested, prompts = _download(page, "#save-prompts", tmp_path, "prompts.safetensors")
        assert suggested.startswith("biomed-dpt-prompts_") and suggested.endswith(".safetensors")
        from safetensors import safe_open

        with safe_open(str(prompts), framework="pt") as f:
            assert json.loads(f.metadata()["classnames"]) == CLASSES
            assert json.loads(f.metadata()["descriptions"]) == {CLASSES[0]: ["bone is bright"]}
        if lang == "ko":
            _server_text_is_korean(page, ["#task-status", "#example-counts", "#tune-status", "#estimate-status",
                                          "#predict-status", "#test-status", "#eval-status"])
        context.close()

        # ... and loading them in a new session restores the whole task
        browser2, context2, page2 = _browser(p, locale)
        page2.goto(app_url)
        wait_text(page2, "#model-status", "tiny-biomedclip")
        page2.get_by_role("tab", name=ui["tab6"]).click()
        page2.locator("#load-prompts input[type=file]").set_input_files(str(prompts))
        wait_text(page2, "#prompts-status", CLASSES[0])
        shot(page2, f"{lang}-8-loaded")
        page2.get_by_role("tab", name="1 · " + ("Task" if lang == "en" else "과제")).click()
        assert page2.get_by_label(ui["modality"], exact=True).first.input_value() in (
            "other", "기타")
        assert page2.get_by_label(ui["template"]).input_value() == TEMPLATE
        browser2.close()
        browser.close()


def _predict_the_sample_scan(page) -> None:
    """The sample set's own scan to predict (one click puts it in the box), predicted."""
    page.locator("#sample-to-predict").click()
    wait_text(page, "#predict-scan", "mri_head")
    answer_after(page, "#predict-status",
                 page.get_by_role("button", name="Predict", exact=True).click)
    page.wait_for_function("() => document.querySelector('#scan-view img') &&"
                           " document.querySelector('#tuned-probs').innerText.includes('%')")


def test_a_teacher_shows_the_whole_flow_with_sample_scans(app_url, tmp_path):
    """No files brought: one click sets a task and adds its licensed sample scans."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, context, page = _browser(p, "en-US")
        page.goto(app_url)
        status = use_sample_scans(page)
        assert "computed tomography 2" in status and "ultrasound 2" in status
        cell = page.locator("#class-table").get_by_test_id("cell-0-1").inner_text()
        assert cell.count("\n") >= 1  # one sentence per line, not one run-on paragraph
        shot(page, "sample-1-task")
        page.get_by_role("tab", name="2 · Examples").click()
        page.wait_for_function(
            "() => document.querySelectorAll('.card-gallery .thumbnail-item').length === 8")
        assert "(sample)" in text_of(page, "#card-0-gallery")
        shot(page, "sample-2-examples")
        page.get_by_role("tab", name="3 · Tune").click()
        page.get_by_role("button", name="Tune prompts").click()
        wait_text(page, "#tune-status", "Tuning finished", timeout=120_000)
        predict_example_picture(page, tmp_path)
        assert "computed tomography" in text_of(page, "#tuned-probs")
        shot(page, "sample-3-predict")
        # the set's own scan to predict, one click away (not one of its examples)
        page.locator("#predict-scan").get_by_role("button", name="Clear").click()
        _predict_the_sample_scan(page)
        assert picture_in(page, "#scan-view").size == (224, 224)
        shot(page, "sample-3b-sample-scan")
        page.get_by_role("tab", name="6 · Save / load").click()
        page.wait_for_timeout(3_000)  # a tab's first opening: its button takes a moment
        _, prompts = _download(page, "#save-prompts", tmp_path, "tuned.safetensors")
        from safetensors import safe_open

        with safe_open(str(prompts), framework="pt") as f:
            assert "x-ray radiograph" in json.loads(f.metadata()["classnames"])

        # the teacher renames a class: its examples stay, the prompts tuned for the old names
        # no longer apply, the page says so and no longer offers them for saving
        page.get_by_role("tab", name="1 · Task").click()
        fill_cell(page, 2, 0, "radiograph")
        status = answer_after(page, "#task-status",
                              page.get_by_role("button", name="Use this task").click)
        assert text("en", "renamed", old="x-ray radiograph", new="radiograph", n=2) in status
        assert "tune again in step 3" in status and "x-ray radiograph" in status
        shot(page, "sample-4-renamed")
        page.get_by_role("tab", name="6 · Save / load").click()
        page.wait_for_timeout(1_000)
        downloads = []
        page.on("download", lambda d: downloads.append(d))
        page.locator("#save-prompts").click()
        page.wait_for_timeout(2_000)
        assert downloads == []  # nothing stale to download
        shot(page, "sample-5-nothing-to-save")
        page.get_by_role("tab", name="4 · Predict").click()
        answer_after(page, "#predict-status",
                     page.get_by_role("button", name="Predict", exact=True).click)
        assert text("en", "zero_shot_only")[:40] in text_of(page, "#predict-status")
        assert "radiograph" in text_of(page, "#zero-probs")
        shot(page, "sample-6-zero-shot")
        browser.close()


def _toast(page, wanted: str) -> str:
    toast = page.locator(".toast-body", has_text=wanted).first
    toast.wait_for(timeout=10_000)
    return toast.inner_text()


def test_each_run_owns_its_stop_and_no_prompts_are_lost(app_url, tmp_path):
    """Issue 20, defects 1-3 as a person meets them: Stop with nothing running; Save and Tune
    while the estimate runs; Tune then Stop at once after a finished run; Evaluate after it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, context, page = _browser(p, "en-US")
        page.goto(app_url)
        use_sample_scans(page)
        page.get_by_role("tab", name="3 · Tune").click()
        stop = page.get_by_role("button", name="Stop", exact=True)
        stop.click()  # nothing runs: said, and nothing else changes
        _toast(page, text("en", "nothing_running"))
        assert text_of(page, "#tune-status").strip() == ""
        shot(page, "runs-1-stop-with-nothing-running")

        tune = page.get_by_role("button", name="Tune prompts")
        tune.click()
        wait_text(page, "#tune-status", "Tuning finished", timeout=120_000)
        estimating = wait_text(page, "#estimate-status", "Estimating accuracy")
        assert "(2-fold" in estimating  # the folds it uses: two examples per class
        shot(page, "runs-2-estimating")
        page.get_by_role("tab", name="6 · Save / load").click()
        page.wait_for_timeout(1_000)
        _, saved = _download(page, "#save-prompts", tmp_path, "during-estimate.safetensors")
        assert saved.stat().st_size > 0  # Save answers while the estimate runs
        page.get_by_role("tab", name="3 · Tune").click()
        wait_text(page, "#estimate-status", "Held-out estimate", timeout=120_000)
        finished = text_of(page, "#tune-status")
        steps = int(finished.split(" after ")[1].split(" steps")[0])

        # Tune, then Stop at once: the finished run's prompts stay, the stopped ones are offered
        # (a cold start: a warm one, from the prompts just tuned, would end before the Stop)
        page.locator("#cold-start input").check()
        tune.click()
        wait_text(page, "#tune-status", "Step ", timeout=60_000)
        stop.click()
        offered = wait_text(page, "#tune-status", "Stopped by you after")
        assert f"Your tuned prompts ({steps} steps) are kept" in offered
        swap = page.locator("#swap-prompts")
        assert "Use the stopped run's prompts" in swap.inner_text()
        # the kept prompts' estimate is shown again, not lost with the stopped run
        wait_text(page, "#estimate-status", "Held-out estimate")
        shot(page, "runs-3-stopped-offered")
        swap.click()
        wait_text(page, "#tune-status", "Now using the other prompts")
        page.wait_for_function(
            "() => document.querySelector('#swap-prompts').innerText.includes('Restore')")
        assert f"Restore the previous prompts ({steps} steps)" in swap.inner_text()
        shot(page, "runs-4-swapped")
        swap.click()
        wait_text(page, "#tune-status", f"after {steps} steps")

        # after the Stop, evaluation and new examples work as ever
        page.get_by_role("tab", name="5 · Evaluate").click()
        page.locator("#test-files input[type=file]").set_input_files(
            real_scan("CT_small.dcm", tmp_path))
        choose(page, "Class of these scans", "computed tomography")
        answer_after(page, "#test-status",
                     page.get_by_role("button", name="Add to the test set").click)
        evaluated = answer_after(page, "#eval-status",
                                 page.get_by_role("button", name="Evaluate", exact=True).click)
        assert "1 test scans. Accuracy" in evaluated and "stopped" not in evaluated
        shot(page, "runs-5-evaluated-after-stop")
        browser.close()


def test_typed_numbers_count_and_settings_stay_with_their_file(app_url, app_log, tmp_path):
    """Issue 20, defects 4 and 5: a typed opacity and Enter redraws the map and the report
    holds it; a slice number left from a volume does not follow other uploads; a frame typed
    past the last one is said, never a logged traceback."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, context, page = _browser(p, "en-US")
        page.goto(app_url)
        use_sample_scans(page)
        predict_example_picture(page, tmp_path)
        before = picture_in(page, "#attention-map")
        old_src = page.locator("#attention-map img").first.get_attribute("src")
        box = page.locator("#opacity input[type=number]")
        box.fill("0.9")
        box.press("Enter")
        # the map is redrawn without a click elsewhere (a new picture, however busy the machine)
        page.wait_for_function("old => document.querySelector('#attention-map img')?.src"
                               " && document.querySelector('#attention-map img').src !== old",
                               arg=page.locator("#attention-map img").first.evaluate(
                                   "img => img.src"), timeout=60_000)
        page.wait_for_function("() => !document.querySelector('#report button, #report a')"
                               "?.hasAttribute('disabled')")
        after = picture_in(page, "#attention-map")
        assert page.locator("#attention-map img").first.get_attribute("src") != old_src
        assert after.tobytes() != before.tobytes()  # redrawn at once, no click elsewhere
        _, saved = _download(page, "#report", tmp_path, "report.png")
        assert json.loads(Image.open(saved).text["biomed-dpt-report"])["opacity"] == 0.9
        shot(page, "typed-1-opacity")

        page.get_by_role("tab", name="2 · Examples").click()
        page.locator("#example-files input[type=file]").set_input_files(
            real_scan("emri_small.dcm", tmp_path))  # 10 frames
        wait_text(page, "#example-preview-text", "0–9")
        frame_box = page.locator("#example-frame input[type=number]")
        frame_box.fill("30")
        frame_box.press("Enter")
        said = wait_text(page, "#example-preview-text", "There is no")
        assert "30" in said
        slice_box = page.locator("#example-slice input")
        assert slice_box.input_value() == "30"
        shot(page, "typed-2-no-such-frame")
        # another file in the viewer starts at its own middle slice
        page.locator("#example-files input[type=file]").set_input_files(
            real_scan("CT_small.dcm", tmp_path))
        page.wait_for_function("() => document.querySelector('#example-slice input').value"
                               " === '-1'")
        # and a card takes each file's middle slice, whatever the slice box says
        slice_box.fill("100")
        page.locator("#card-0-files input[type=file]").set_input_files(
            real_scan("693_UNCR.dcm", tmp_path))
        _toast(page, "Added 1 example")
        shot(page, "typed-3-card-upload")
        browser.close()
    assert "Traceback" not in app_log.read_text()


def test_a_workspace_saved_in_one_browser_opens_in_another(app_url, tmp_path):
    """Save the workspace, open it in a new browser: the cards, the curve's run, the same
    prediction and the same evaluation come back."""
    from playwright.sync_api import sync_playwright

    def predict_sample(page) -> str:
        page.get_by_role("tab", name="4 · Predict").click()
        _predict_the_sample_scan(page)
        return text_of(page, "#tuned-probs")

    def evaluate_one_scan(page) -> str:
        page.get_by_role("tab", name="5 · Evaluate").click()
        page.locator("#test-files input[type=file]").set_input_files(
            real_scan("CT_small.dcm", tmp_path))
        answer_after(page, "#test-status",
                     page.get_by_role("button", name="Add to the test set").click)
        answer_after(page, "#eval-status",
                     page.get_by_role("button", name="Evaluate", exact=True).click)
        return text_of(page, "#metrics")

    with sync_playwright() as p:
        browser, context, page = _browser(p, "en-US")
        page.goto(app_url)
        use_sample_scans(page)
        page.get_by_role("tab", name="3 · Tune").click()
        page.get_by_role("button", name="Tune prompts").click()
        tuned = wait_text(page, "#tune-status", "Tuning finished", timeout=120_000)
        before = predict_sample(page)
        metrics = evaluate_one_scan(page)
        page.get_by_role("tab", name="6 · Save / load").click()
        status = answer_after(page, "#workspace-status",
                              page.locator("#save-workspace").click)
        assert "Saved the workspace as" in status and "8 examples" in status
        shot(page, "workspace-1-saved")
        with page.expect_download() as download:
            page.locator("#workspace-file a").first.click()
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        assert saved.name.endswith(".biomed-dpt.zip")
        browser.close()

        browser, context, page = _browser(p, "en-US")  # another browser, a new session
        page.goto(app_url)
        wait_text(page, "#model-status", "tiny-biomedclip")
        page.get_by_role("tab", name="6 · Save / load").click()
        page.locator("#open-workspace input[type=file]").set_input_files(str(saved))
        opened = wait_text(page, "#workspace-status", "Opened the workspace")
        assert "8 examples, 1 test scans, with its tuned prompts" in opened
        shot(page, "workspace-2-opened")
        page.get_by_role("tab", name="2 · Examples").click()
        page.wait_for_function(
            "() => document.querySelectorAll('.card-gallery .thumbnail-item').length === 8")
        page.get_by_role("tab", name="3 · Tune").click()
        assert text_of(page, "#tune-status") == tuned  # the same run's summary
        assert predict_sample(page) == before
        shot(page, "workspace-3-same-prediction")
        page.get_by_role("tab", name="5 · Evaluate").click()
        assert text_of(page, "#metrics") == metrics  # the evaluation, as it was
        page.locator("#confusion-tuned img").wait_for()
        shot(page, "workspace-4-same-evaluation")
        browser.close()


def _settled(page) -> None:
    """Wait until no event of the page is pending or streaming (its report made, its estimate
    done), as a person who reloads after reading the answer does."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"status-tracker\"].pending,"
        " [data-testid=\"status-tracker\"].generating, #report button[disabled]')",
        timeout=60_000)
    page.wait_for_timeout(500)


def _thumbnails(page, n: int) -> None:
    page.get_by_role("tab", name="2 · Examples").click()
    page.wait_for_function(
        f"() => document.querySelectorAll('.card-gallery .thumbnail-item').length === {n}")


def _work_shown(page) -> dict:
    """What a person sees of the work after the page (re)opened: every card, the run's
    summary, its curve and estimate, the last prediction."""
    wait_text(page, "#model-status", "tiny-biomedclip")
    _thumbnails(page, 8)
    page.get_by_role("tab", name="3 · Tune").click()
    wait_text(page, "#estimate-status", "Held-out estimate", timeout=120_000)
    page.locator("#training-curve img").wait_for()
    seen = {"tuned": text_of(page, "#tune-status"), "estimate": text_of(page, "#estimate-status")}
    page.get_by_role("tab", name="4 · Predict").click()
    page.wait_for_function("() => document.querySelector('#scan-view img') &&"
                           " document.querySelector('#attention-map img') &&"
                           " document.querySelector('#tuned-probs').innerText.includes('%')")
    seen["prediction"] = text_of(page, "#tuned-probs")
    seen["status"] = text_of(page, "#predict-status")
    return seen


def test_a_reload_or_a_closed_tab_loses_nothing_and_two_tabs_never_share_work(app_url,
                                                                            tmp_path):
    """F5 after adding examples finds every card; after tuning and predicting it finds the
    run, its curve and estimate and the same prediction; so does a closed and reopened tab. A
    second tab opens work of its own and may take the first one's over, after which the first
    tab's steps are refused with the reason."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, context, page = _browser(p, "en-US")
        page.goto(app_url)
        use_sample_scans(page)
        _settled(page)
        page.reload()
        wait_text(page, "#model-status", "tiny-biomedclip")
        _thumbnails(page, 8)
        assert "computed tomography" in page.locator("#class-table").inner_text()
        shot(page, "reload-1-examples-back")
        page.get_by_role("tab", name="3 · Tune").click()
        page.get_by_role("button", name="Tune prompts").click()
        wait_text(page, "#tune-status", "Tuning finished", timeout=120_000)
        page.get_by_role("tab", name="4 · Predict").click()
        _predict_the_sample_scan(page)
        before = _work_shown(page)

        _settled(page)
        page.reload()
        assert _work_shown(page) == before
        shot(page, "reload-2-same-prediction")
        page.get_by_role("tab", name="3 · Tune").click()
        shot(page, "reload-3-same-run")

        _settled(page)
        page.close()  # the tab closed, and opened again
        page = context.new_page()
        page.goto(app_url)
        assert _work_shown(page) == before
        assert text_of(page, "#work-notice").strip() == ""

        second = context.new_page()  # a second tab of the same browser
        second.goto(app_url)
        notice = wait_text(second, "#work-notice", "open in another tab")
        assert "new, empty workspace" in notice
        assert "computed tomography" not in second.locator("#class-table").inner_text()
        second.get_by_role("tab", name="2 · Examples").click()
        assert second.locator(".card-gallery .thumbnail-item").count() == 0  # its own work
        shot(second, "tabs-1-second-tab")
        second.get_by_role("tab", name="1 · Task").click()
        second.locator("#take-over").click()
        wait_text(second, "#work-notice", "is here now")
        assert _work_shown(second) == before
        shot(second, "tabs-2-taken-over")
        refused = answer_after(page, "#predict-status",
                               page.get_by_role("button", name="Predict", exact=True).click)
        assert "open in another tab" in refused
        shot(page, "tabs-3-first-tab-refused")
        browser.close()


def test_a_volume_is_predicted_slice_by_slice_in_the_browser(app_url, tmp_path):
    """A 10-frame MR: "Predict every slice" draws the probabilities along the volume and shows
    the most confident slice with its map; sliding to another slice shows that one's."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, context, page = _browser(p, "en-US")
        page.goto(app_url)
        use_sample_scans(page)
        page.get_by_role("tab", name="4 · Predict").click()
        page.locator("#predict-scan input[type=file]").set_input_files(
            real_scan("emri_small.dcm", tmp_path))
        page.locator("#predict-volume").click()  # its progress shows first, then the answer
        said = wait_text(page, "#predict-status", "Classified 10 of the 10 slices")
        best = int(said.split("most confident about slice ")[1].split(":")[0])
        page.locator("#volume-plot img").wait_for()
        plot = picture_in(page, "#volume-plot")
        assert plot.width > 400
        assert colour_share(plot, "#1f5fbf") > 0.002  # the first class's line is drawn
        assert page.locator("#attention-map img").count() == 1
        shot(page, "volume-1-every-slice")
        other = 0 if best else 1
        box = page.locator("#volume-slice input[type=number]")
        box.fill(str(other))
        box.press("Enter")
        wait_text(page, "#predict-status", f"slice {other} of 0–9 (most confident: {best})")
        assert page.locator("#predict-slice input").first.input_value() == str(other)
        shot(page, "volume-2-another-slice")
        browser.close()


def _ct_series_zip(folder, n: int = 8) -> str:
    """A zip of one CT series of `n` DICOM files written by pydicom from its real CT slice:
    each slice the anatomy moved and its attenuation changed a little, at its own position
    (the files in shuffled order)."""
    import zipfile

    import numpy as np
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    anatomy = ds.pixel_array.astype(np.int16)
    path = folder / "ct-series.zip"
    with zipfile.ZipFile(path, "w") as z:
        for k in np.random.default_rng(0).permutation(n):
            ds.ImagePositionPatient = [0.0, 0.0, 2.5 * float(k)]
            ds.InstanceNumber = int(k) + 1
            ds.PixelData = (np.roll(anatomy, 6 * int(k), axis=0) + 15 * int(k)).astype(
                np.int16).tobytes()
            one = folder / f"slice-{k}.dcm"
            ds.save_as(one)
            z.write(one, f"series/IM{k:04d}")
    return str(path)


def test_volumes_are_seen_whole_added_by_range_and_predicted_whole(app_url, tmp_path):
    """A CT volume from a zipped DICOM series and a 4-D NIfTI (nibabel's): the viewer shows a
    strip of slices (a click picks one) and, for the 4-D file, its volume; every slice from a
    to b is said with its count, then added; in Predict a click on the strip predicts that
    slice, and "Predict every slice" draws the plot that the report then carries."""
    import nibabel as nib
    from playwright.sync_api import sync_playwright

    series = _ct_series_zip(tmp_path)
    four_d = str(Path(nib.__file__).parent / "tests" / "data" / "example4d.nii.gz")
    with sync_playwright() as p:
        browser, context, page = _browser(p, "en-US")
        page.goto(app_url)
        use_sample_scans(page)
        page.get_by_role("tab", name="2 · Examples").click()
        page.locator("#example-files input[type=file]").set_input_files(series)
        wait_text(page, "#example-preview-text", "slice 4 of 0–7")
        strip = page.locator("#example-strip")
        strip.locator("img").nth(7).wait_for()
        assert strip.locator("img").count() == 8
        shot(page, "volumes-1-ct-series-strip")
        middle = picture_in(page, "#example-preview")
        strip.locator("img").nth(2).click()  # the third thumbnail: slice 2
        wait_text(page, "#example-preview-text", "slice 2 of 0–7")
        assert page.locator("#example-slice input").input_value() == "2"
        assert picture_in(page, "#example-preview").tobytes() != middle.tobytes()
        shot(page, "volumes-2-slice-picked-by-look")
        page.locator("#every-slice input").check()
        note = wait_text(page, "#range-note", "examples")
        assert "every slice from 0 to 6" in note  # around the slice shown
        first = page.locator("#range-first input")
        first.fill("3")
        first.press("Tab")
        last = page.locator("#range-last input")
        last.fill("7")
        last.press("Tab")
        note = wait_text(page, "#range-note", "from 3 to 7")
        assert "5 examples" in note
        shot(page, "volumes-3-range-said")
        answer_after(page, "#example-status", page.get_by_role("button", name="Add examples")
                     .click)
        assert "Added 5 examples" in wait_text(page, "#example-status", "Added")
        shot(page, "volumes-4-range-added")
        # a 4-D NIfTI: its volume chosen, then one slice of it added
        page.locator("#example-files input[type=file]").set_input_files(four_d)
        wait_text(page, "#example-preview-text", "volume 0 of 0–1")
        assert page.locator("#every-slice input").is_checked() is False  # a new file: reset
        volume_box = page.locator("#example-4d-volume input")
        first_volume = picture_in(page, "#example-preview")
        volume_box.fill("1")
        volume_box.press("Enter")
        wait_text(page, "#example-preview-text", "volume 1 of 0–1")
        assert picture_in(page, "#example-preview").tobytes() != first_volume.tobytes()
        shot(page, "volumes-5-4d-volume-chosen")
        answer_after(page, "#example-status", page.get_by_role("button", name="Add examples")
                     .click)
        assert "Added 1 example" in wait_text(page, "#example-status", "Added")

        page.get_by_role("tab", name="4 · Predict").click()
        page.locator("#predict-scan input[type=file]").set_input_files(series)
        pstrip = page.locator("#predict-strip")
        pstrip.locator("img").nth(7).wait_for()
        pstrip.locator("img").nth(3).click()
        wait_text(page, "#predict-status", "Top class")
        assert page.locator("#predict-slice input").input_value() == "3"
        shot(page, "volumes-6-predict-strip-click")
        page.locator("#predict-volume").click()
        wait_text(page, "#predict-status", "Classified 8 of the 8 slices")
        page.locator("#volume-plot img").wait_for()
        assert colour_share(picture_in(page, "#volume-plot"), "#1f5fbf") > 0.002
        page.wait_for_function("() => !document.querySelector('#report button, #report a')"
                               "?.hasAttribute('disabled')")
        _, saved = _download(page, "#report", tmp_path, "volume-report.png")
        report = Image.open(saved)
        facts = json.loads(report.text["biomed-dpt-report"])
        assert [r["slice"] for r in facts["slices"]] == list(range(8))
        assert report.height > 800 and colour_share(report, "#1f5fbf") > 0.001
        shot(page, "volumes-7-every-slice-and-report")
        # the 4-D file's second volume, predicted whole
        page.locator("#predict-scan").get_by_role("button", name="Clear").click()
        page.locator("#predict-scan input[type=file]").set_input_files(four_d)
        pvolume = page.locator("#predict-4d-volume input")
        pvolume.wait_for()
        pvolume.fill("1")
        pvolume.press("Enter")
        page.locator("#predict-volume").click()
        said = wait_text(page, "#predict-status", "Classified 24 of the 24 slices")
        assert "most confident about slice" in said
        page.wait_for_function("() => !document.querySelector('#report button, #report a')"
                               "?.hasAttribute('disabled')")
        _, saved = _download(page, "#report", tmp_path, "4d-report.png")
        facts = json.loads(Image.open(saved).text["biomed-dpt-report"])
        assert (facts["volume"], facts["volumes"]) == (1, 2) and len(facts["slices"]) == 24
        shot(page, "volumes-8-4d-predicted-whole")
        browser.close()


POOL_FILES = ["693_J2KR.dcm", "CT_small.dcm", "JPEG-LL.dcm", "JPEG2000.dcm",
              "MR-SIEMENS-DICOM-WithOverlays.dcm", "MR2_J2KR.dcm", "MR_small.dcm",
              "OBXXXX1A.dcm", "OT-PAL-8-face.dcm", "RG1_J2KR.dcm", "RG3_J2KR.dcm", "SC_rgb.dcm",
              "US1_J2KR.dcm", "color-pl.dcm", "emri_small.dcm", "examples_ybr_color.dcm",
              "explicit_VR-UN.dcm", "gdcm-US-ALOKA-16.dcm", "liver.dcm", "mlut_18.dcm"]


def _click_colour(page, selector: str, colour: str) -> None:
    """Click the middle of the pixels of `colour` in the picture of `selector` (a dot of a
    class on the map), scaled from the picture to the page."""
    import numpy as np

    picture = picture_in(page, selector)
    rgb = np.array(Image.new("RGB", (1, 1), colour)).reshape(3)
    pixels = np.asarray(picture.convert("RGB")).astype(int)
    ys, xs = np.nonzero(np.abs(pixels - rgb).sum(axis=2) < 30)
    assert len(xs), f"no {colour} on the map"
    # one dot: the pixels nearest to the first one found
    near = (np.abs(xs - xs[0]) < 8) & (np.abs(ys - ys[0]) < 8)
    img = page.locator(f"{selector} img")
    box = img.bounding_box()
    scale = box["width"] / picture.width
    img.click(position={"x": float(xs[near].mean()) * scale, "y": float(ys[near].mean()) * scale})


def test_the_labelling_loop_in_the_browser(app_url, tmp_path):
    """A pool of 20 real scans: the map shows them, Label next suggests which to label, four
    are labelled with one click each, the map follows, a warm re-tune says so, and "is
    labelling still paying?" gains its second point."""
    from playwright.sync_api import sync_playwright

    from demo.work.report import PLOT_COLOURS

    with sync_playwright() as p:
        browser, context, page = _browser(p, "en-US")
        page.goto(app_url)
        use_sample_scans(page)
        page.get_by_role("tab", name="3 · Tune").click()
        page.get_by_role("button", name="Tune prompts").click()
        wait_text(page, "#estimate-status", "Held-out", 120_000)
        page.locator("#paying-plot img").wait_for()
        first_plot = picture_in(page, "#paying-plot")
        old_src = page.locator("#paying-plot img").get_attribute("src")

        page.get_by_role("tab", name="2 · Examples").click()
        page.locator("#pool-files input[type=file]").set_input_files(
            [real_scan(n, tmp_path) for n in POOL_FILES])
        page.locator("#add-to-pool").click()
        assert "Added 20 scans to the pool" in wait_text(page, "#pool-status", "Added")
        page.locator("#map-of-examples").get_by_text("A map of the examples").click()
        page.locator("#draw-map").click()
        wait_text(page, "#map-status", "8 examples, 0 test scans and 20 unlabelled scans")
        shot(page, "labelling-1-map")
        page.locator("#label-next").click()
        said = wait_text(page, "#pool-status", "teach most")
        page.locator("#pool-card-3").wait_for()
        assert f"The {page.locator('.pool-card').count()} scans (of 20 unlabelled)" in said
        assert "Unsure" in text_of(page, "#pool-card-0") or "disagree" in text_of(
            page, "#pool-card-0")
        shot(page, "labelling-2-suggestions")
        for left in (19, 18, 17, 16):
            card = page.locator("#pool-card-0").inner_text()
            guess = page.locator("#pool-confirm-0").inner_text().replace("✓", "").strip()
            page.locator("#pool-confirm-0").click()
            status = wait_text(page, "#pool-status", f"{left} left in the pool")
            assert f"Added to {guess}" in status
            page.wait_for_function(  # the labelled card leaves; the next one comes first
                "(old) => document.querySelector('#pool-card-0')?.innerText !== old",
                arg=card)
        wait_text(page, "#map-status", "12 examples, 0 test scans and 16 unlabelled scans")
        shot(page, "labelling-3-four-labelled")
        _click_colour(page, "#feature-map", PLOT_COLOURS[0])  # a dot of the first class
        wait_text(page, "#map-status", "an example of")
        page.locator("#map-pick img").wait_for()

        page.get_by_role("tab", name="3 · Tune").click()
        page.get_by_role("button", name="Tune prompts").click()
        wait_text(page, "#tune-status", "continued from the prompts tuned before", 120_000)
        wait_text(page, "#estimate-status", "on your 12 examples", 120_000)
        page.wait_for_function(
            "(old) => document.querySelector('#paying-plot img')?.src !== old",
            arg=old_src, timeout=30_000)
        second_plot = picture_in(page, "#paying-plot")
        assert second_plot.tobytes() != first_plot.tobytes()
        assert colour_share(second_plot, "#1f77b4") > colour_share(first_plot, "#1f77b4")
        shot(page, "labelling-4-warm-and-paying")
        browser.close()
