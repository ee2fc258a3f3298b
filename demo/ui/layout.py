"""The app's layout: six steps as tabs (one small builder each), wired to `Studio` handlers.

Queues: tuning runs take turns in their own line (`TuningLine`, each waiting user told their
place), the encoding of examples as they arrive has its own ("encode"), and so do reports
("report", made after the prediction they describe is on screen), so prediction, maps, evaluation
and reading examples ("infer") never wait behind another user's tuning, encoding or report; on a
CPU, background work also gives way to them between steps (`demo.runtime.traffic`). The Stop
button and light events bypass the queue.
"""
from __future__ import annotations

import argparse
import os
from types import SimpleNamespace

import gradio as gr

from core import presets
from core.overlay import colorbar
from demo.runtime import gpu, storage
from demo.text.strings import EN, KO
from demo.ui import replies, tools
from demo.ui.blocks import StudioBlocks
from demo.ui.handlers import LOAD_OUTPUTS, Studio
from demo.ui.replies import AUTO_WINDOW, MANUAL_WINDOW, by_name, window_choices
from demo.ui.steps.evaluate import CELL_OUTPUTS, EVALUATE_OUTPUTS, PROMOTE_OUTPUTS, TEST_OUTPUTS
from demo.ui.steps.examples import ADD_OUTPUTS, RANGE_OUTPUTS, REMOVE_OUTPUTS, VIEW_OUTPUTS
from demo.ui.steps.pool import LABEL_OUTPUTS, MAP_OUTPUTS, POOL_OUTPUTS, SUGGEST_OUTPUTS
from demo.work.pool import ORDERS, RANKED
from demo.ui.steps.predict import PREDICT_OUTPUTS, SLICE_OUTPUTS, STRIP_OUTPUTS, VOLUME_OUTPUTS
from demo.ui.steps.prompts import PROMPTS_OUTPUTS
from demo.ui.steps.task import PRESET_OUTPUTS, TASK_OUTPUTS
from demo.ui.steps.tune import ESTIMATE_OUTPUTS, STOP_OUTPUTS, TUNE_OUTPUTS
from demo.ui.steps.workspace import (DELETE_OUTPUTS, LESSON_OUTPUTS, LESSONS_ENV,
                                     OPEN_WORKSPACE_OUTPUTS, PAGE_WORK_OUTPUTS,
                                     SAMPLE_OUTPUTS, SAVE_WORKSPACE_OUTPUTS)
from demo.ui.theme import CSS, HEAD, theme

I18N = gr.I18n(en=EN, ko=KO)
QUEUE_SIZE = 16
TUNING_SESSIONS = 8  # tuning generators alive at once: one runs, the others report their place
INFER_CONCURRENCY = 2
ENCODE_CONCURRENCY = 1  # encoding examples as they arrive: its own line, never before predictions
REPORT_CONCURRENCY = 1  # reports, made after their prediction is shown: never before predictions
MAX_UPLOAD = "200mb"
WORK_KEYS_STORAGE = "biomed-dpt-studio-work"  # where the browser keeps its work's keys
TIME_BUDGET_S = 300.0
ZEROGPU_TIME_BUDGET_S = 90.0  # plus the worker's start: within what ZeroGPU lends per call


def t(key: str):
    return I18N(key)


def _window_controls(prefix: str, volumes: bool = False):
    """Window choice (CT presets only on CT tasks), manual level and width, frame or slice;
    with `volumes`, also the volume of a 4-D file (shown once one is seen)."""
    with gr.Row():
        window = gr.Dropdown(window_choices("en", "MRI"), value=AUTO_WINDOW, label=t("window"),
                             elem_id=f"{prefix}-window")
        level = gr.Number(40, label=t("level"), visible=False, elem_id=f"{prefix}-level")
        width = gr.Number(400, label=t("width"), visible=False, minimum=0,
                          elem_id=f"{prefix}-width")
        index = gr.Number(-1, precision=0, label=t("slice"), elem_id=f"{prefix}-slice")
        volume = gr.Number(0, precision=0, minimum=0, label=t("volume"), visible=False,
                           elem_id=f"{prefix}-4d-volume") if volumes else None
    manual = (lambda choice: tuple(gr.update(visible=choice == MANUAL_WINDOW) for _ in range(2)))
    window.change(manual, window, [level, width], queue=False, api_visibility="private")
    return (window, level, width, index) + ((volume,) if volumes else ())


def _bump(n):
    return (n or 0) + 1


def _shown_if_any(value):
    """A box shown while the component it holds has a value."""
    return gr.Column(visible=value is not None)


def _show_work(event, studio: Studio, ui: SimpleNamespace, session: gr.State):
    """After `event` put other work on the page (opened, deleted, come back, taken over): its
    cards, the workspace file box, and the report of its prediction. Unqueued, so a page that
    loads opens no event stream of its own (one closed mid-way can end another's)."""
    private = dict(queue=False, api_visibility="private")
    return event.then(_bump, ui.cards_rev, ui.cards_rev, **private).then(
        _shown_if_any, ui.workspace_file, ui.workspace_box, **private).then(
        studio.paying_plot, session, ui.paying_plot, **private).then(
        studio.report, [session, ui.map_class, ui.alpha, ui.cmap], ui.report,
        api_name="report_on_return", **private)


def _class_card(studio: Studio, i: int, card: dict, session, status, counts, gallery, rev,
                view) -> gr.Gallery:
    """One class: its name, descriptions and count, its thumbnails (click one, then remove
    it), and an upload area that adds scans to this class. Returns its thumbnails, whose
    clicks `_selecting` wires."""
    name = card["name"]
    with gr.Group(elem_classes="class-card", elem_id=f"card-{i}"):
        lines = card["descriptions"][:3]
        more = " …" if len(card["descriptions"]) > 3 else ""
        gr.Markdown(f"### {name} · {len(card['thumbnails'])}\n"
                    + ("\n".join(f"- {line}" for line in lines) + more if lines else ""),
                    elem_id=f"card-{i}-title")
        pictures = gr.Gallery(card["thumbnails"], columns=8, height=190, fit_columns=False,
                              object_fit="contain", allow_preview=False, show_label=False,
                              selected_index=card["selected"], elem_id=f"card-{i}-gallery",
                              elem_classes="card-gallery",
                              # a new gallery when its pictures change (no highlight left
                              # on a neighbour of a removed picture)
                              key=f"card-{i}-" + "-".join(map(str, card["uids"])))
        with gr.Row():
            upload = gr.File(file_count="multiple", type="filepath", label=t("card_upload"),
                             elem_id=f"card-{i}-files", height=110, scale=3)
            remove = gr.Button(t("remove_selected"), elem_id=f"card-{i}-remove", scale=1)

    def add(current, files, window, level, width, request: gr.Request = None):
        # a card takes the window; each file's frame or slice is its middle one (the slice
        # box belongs to the file in the viewer above), and the result is said where the
        # user is looking, as a toast
        return studio.add_examples(current, files, name, window, level, width, -1,
                                   request=request, toast=True)

    def remove_mine(current, request: gr.Request = None):
        return studio.remove_selected(current, request, label=name)

    added = {"session": session, "files": upload, "example_status": status, "gallery": gallery,
             "counts": counts}
    # (the chain ends with the bump: it re-renders the cards, and with them this event's
    # own steps; the features are prepared by the bump's change, outside the cards)
    upload.upload(by_name(add, added), [session, upload, *view[:3]], list(added.values()),
                  concurrency_id="infer", concurrency_limit=INFER_CONCURRENCY,
                  api_visibility="private").then(_bump, rev, rev, queue=False,
                                                 api_visibility="private")
    removed = {name: added[name] for name in REMOVE_OUTPUTS}
    remove.click(by_name(remove_mine, removed), session, list(removed.values()),
                 api_visibility="private").then(_bump, rev, rev, queue=False,
                                                api_visibility="private")
    return pictures


def _selecting(studio: Studio, names: list[str], galleries: list, session, status) -> None:
    """A click on a thumbnail selects that example; the one highlight on the page is the
    selection (the other cards' highlights go, without redrawing the cards)."""
    for mine, (name, pictures) in enumerate(zip(names, galleries)):
        def select(current, event: gr.SelectData, request: gr.Request = None, name=name,
                   mine=mine):
            current, message = studio.select_in_class(current, name, event.index, request)
            # (-1: no thumbnail; the page does not apply an update to None here)
            others = [gr.skip() if k == mine else gr.update(selected_index=-1)
                      for k in range(len(galleries))]
            return current, message, *others

        pictures.select(select, session, [session, status, *galleries], queue=False,
                        api_visibility="private")


def _task_tab(first, first_organ, lessons) -> SimpleNamespace:
    """Step 1: a ready-made sample set, a lesson (when the app offers some) or a preset; the
    modality, organ, template and the classes' table."""
    modalities = presets.load_modalities()
    tasks = presets.load_tasks()
    with gr.Tab(t("tab_task")):
        with gr.Row(equal_height=True):
            samples = gr.Dropdown([(s.title, s.id) for s in presets.load_samples()],
                                  label=t("samples"), info=t("samples_info"), scale=3,
                                  elem_id="sample-set")
            use_samples = gr.Button(t("use_samples"), variant="secondary", scale=1,
                                    elem_id="use-samples")
        with gr.Row(equal_height=True, visible=bool(lessons)):
            lesson = gr.Dropdown(list(lessons), value=None, label=t("lessons"),
                                 info=t("lessons_info"), scale=3, elem_id="lesson")
            open_lesson = gr.Button(t("open_lesson"), variant="secondary", scale=1,
                                    elem_id="open-lesson")
        preset = gr.Dropdown([(task.title, task.id) for task in tasks], value=None,
                             label=t("preset"), info=t("preset_info"))
        with gr.Row():
            modality = gr.Dropdown([(m.name, m.id) for m in modalities], value=first.id,
                                   label=t("modality"))
            organ = gr.Dropdown(list(first.organs), value=first_organ, label=t("organ"),
                                allow_custom_value=True)
        template = gr.Textbox(presets.template_for(first.id, first_organ), label=t("template"))
        table = gr.Dataframe(headers=[EN["class_name"], EN["class_descriptions"]],
                             datatype=["str", "markdown"], column_count=(2, "fixed"),
                             line_breaks=True,
                             row_count=(4, "dynamic"), type="array", wrap=True,
                             column_widths=["22%", "78%"], max_height=520,
                             value=[["", ""]] * 4, label=t("classes"), interactive=True,
                             elem_id="class-table")
        apply = gr.Button(t("apply_task"), variant="primary")
        task_status = gr.Markdown(elem_id="task-status")
    return SimpleNamespace(preset=preset, template=template, table=table, apply=apply,
                           task_status=task_status, samples=samples, use_samples=use_samples,
                           modality=modality, organ=organ, lesson=lesson,
                           open_lesson=open_lesson)


def _examples_tab(studio: Studio, demo: gr.Blocks, session: gr.State) -> SimpleNamespace:
    """Step 2: labelled examples, read with a window and slice, shown as one card per class."""
    with gr.Tab(t("tab_examples")):
        example_class = gr.Dropdown([], label=t("example_class"), elem_id="example-class")
        window, level, width, index, volume = _window_controls("example", volumes=True)
        with gr.Row():
            files = gr.File(file_count="multiple", type="filepath", label=t("upload_examples"),
                            elem_id="example-files", scale=2)
            with gr.Column(scale=1):
                preview = gr.Image(type="filepath", label=t("scan_preview"), interactive=False,
                                   height=224, elem_id="example-preview")
                frame = gr.Slider(0, 1, value=0, step=1, label=t("frame_slider"),
                                  visible=False, elem_id="example-frame")
                preview_text = gr.Markdown(elem_id="example-preview-text")
        # a volume seen whole: evenly spaced slices, a click picks one
        strip = gr.Gallery(label=t("strip"), visible=False, columns=12, height="auto",
                           fit_columns=False, elem_classes="strip",
                           object_fit="contain", allow_preview=False, buttons=[],
                           elem_id="example-strip")
        strip_slices = gr.State(None)  # the strip's slice numbers, and the volume's count
        with gr.Group(visible=False, elem_id="example-range") as range_row:
            every_slice = gr.Checkbox(False, label=t("every_slice"), elem_id="every-slice")
            with gr.Row():
                range_first = gr.Number(-1, precision=0, label=t("range_first"),
                                        visible=False, elem_id="range-first")
                range_last = gr.Number(-1, precision=0, label=t("range_last"),
                                       visible=False, elem_id="range-last")
            range_note = gr.Markdown(elem_id="range-note")
        add = gr.Button(t("add_examples"), variant="primary")
        example_status = gr.Markdown(elem_id="example-status")
        features_status = gr.Markdown(elem_id="features-status")
        counts = gr.Markdown(elem_id="example-counts")
        # every example, for the API; the page shows them as one card per class below
        gallery = gr.Gallery(label=t("gallery"), visible=False, elem_id="example-gallery")
        remove = gr.Button(visible=False)  # the API's /remove_selected; cards have their own
        cards_rev = gr.Number(0, visible=False)  # bumped whenever the examples change

        @gr.render(inputs=[session], triggers=[cards_rev.change, demo.load])
        def class_cards(current):
            cards = studio.class_cards(current)
            if not cards:
                gr.Markdown(t("cards_empty"))
            galleries = [_class_card(studio, i, card, session, example_status, counts,
                                     gallery, cards_rev, [window, level, width, index])
                         for i, card in enumerate(cards)]
            _selecting(studio, [card["name"] for card in cards], galleries, session,
                       example_status)

        pool = _pool_section(studio, session, example_status, counts, gallery, cards_rev)
    return SimpleNamespace(**vars(pool), example_class=example_class, window=window, level=level,
                           width=width,
                           index=index, add=add, example_status=example_status,
                           features_status=features_status, counts=counts, gallery=gallery,
                           remove=remove, cards_rev=cards_rev, files=files, preview=preview,
                           frame=frame, preview_text=preview_text, volume=volume, strip=strip,
                           strip_slices=strip_slices, range_row=range_row,
                           every_slice=every_slice, range_first=range_first,
                           range_last=range_last, range_note=range_note)


def _pool_section(studio: Studio, session: gr.State, example_status, counts, gallery,
                  cards_rev) -> SimpleNamespace:
    """The unlabelled pool: scans added without a class, the ones to label next as cards
    (the model's guess, why each is suggested), each labelled with one click."""
    with gr.Accordion(t("pool_heading"), open=True, elem_id="pool"):
        gr.Markdown(t("pool_intro"))
        pool_files = gr.File(file_count="multiple", type="filepath", label=t("pool_files"),
                             elem_id="pool-files")
        add_to_pool = gr.Button(t("add_to_pool"), elem_id="add-to-pool")
        with gr.Row():
            pool_order = gr.Radio(list(ORDERS), value=RANKED, label=t("pool_order"),
                                  info=t("pool_order_info"), elem_id="pool-order", scale=2)
            with gr.Column(scale=1):
                label_next = gr.Button(t("label_next"), variant="primary",
                                       elem_id="label-next")
        pool_status = gr.Markdown(elem_id="pool-status")
        suggestions = gr.JSON(visible=False)  # the API's answer; the page shows cards
        # the API's /label_pool_scan (uid, class); the cards label with one click of their own
        pool_uid = gr.Number(visible=False, precision=0)
        pool_label = gr.Textbox(visible=False)
        label_pool = gr.Button(visible=False)
        labelled = {"session": session, "suggestions": suggestions, "pool_status": pool_status,
                    "example_status": example_status, "counts": counts, "gallery": gallery}

        @gr.render(inputs=[suggestions, session], triggers=[suggestions.change])
        def suggestion_cards(rows, current):
            classes = list(getattr(current, "classes", []) or [])
            with gr.Row(elem_classes="pool-cards"):
                for i, row in enumerate(rows or []):
                    _suggestion_card(studio, i, row, classes, session, suggestions, labelled,
                                     cards_rev)
    with gr.Accordion(t("map_heading"), open=False, elem_id="map-of-examples"):
        draw_map = gr.Button(t("draw_map"), elem_id="draw-map")
        with gr.Row():
            feature_map = gr.Image(type="filepath", show_label=False, interactive=False,
                                   buttons=[], elem_id="feature-map", scale=3,
                                   alt_text=t("map_heading"))
            map_pick = gr.Image(type="filepath", label=t("map_picked"), interactive=False,
                                buttons=[], height=180, elem_id="map-pick", scale=1)
        map_status = gr.Markdown(elem_id="map-status")
        map_points = gr.State([])  # where each scan is drawn, for a click
    return SimpleNamespace(draw_map=draw_map, feature_map=feature_map, map_pick=map_pick,
                           map_status=map_status, map_points=map_points,
                           pool_files=pool_files, add_to_pool=add_to_pool,
                           pool_order=pool_order, label_next=label_next,
                           pool_status=pool_status, suggestions=suggestions, pool_uid=pool_uid,
                           pool_label=pool_label, label_pool=label_pool)


def _suggestion_card(studio: Studio, i: int, row: dict, classes: list[str], session,
                     suggestions, labelled: dict, cards_rev) -> None:
    """One suggestion: its picture, why it is suggested, a button confirming the guess and a
    choice of another class; either labels it at once."""
    uid, guess = row["uid"], row["guess"]
    with gr.Column(min_width=170, elem_classes="pool-card", elem_id=f"pool-card-{i}"):
        gr.Image(row["picture"], show_label=False, interactive=False, height=150, buttons=[],
                 container=False, alt_text=row["name"])
        gr.Markdown(row["why"], elem_classes="pool-why")
        confirm = gr.Button(f"✓ {guess}", size="sm", variant="primary",
                            elem_id=f"pool-confirm-{i}")
        other = gr.Dropdown([c for c in classes if c != guess], value=None,
                            label=t("pool_other_class"), elem_id=f"pool-other-{i}")

    def as_guess(current, rows, request: gr.Request = None):
        return studio.label_pool_scan(current, uid, guess, rows, request)

    def as_chosen(current, label, rows, request: gr.Request = None):
        return studio.label_pool_scan(current, uid, label, rows, request)

    names = list(labelled.values())
    confirm.click(by_name(as_guess, labelled), [session, suggestions], names,
                  api_visibility="private").then(_bump, cards_rev, cards_rev, queue=False,
                                                 api_visibility="private")
    other.input(by_name(as_chosen, labelled), [session, other, suggestions], names,
                api_visibility="private").then(_bump, cards_rev, cards_rev, queue=False,
                                               api_visibility="private")


def _tune_tab(first) -> SimpleNamespace:
    """Step 3: the recipe, its settings, Tune and Stop, and the live curve."""
    with gr.Tab(t("tab_tune")):
        recipe = gr.Radio(["fast", "paper"], value="fast", label=t("recipe"), info=t("recipe_info"))
        cold_start = gr.Checkbox(False, label=t("cold_start"), info=t("cold_start_info"),
                                 elem_id="cold-start")
        with gr.Accordion(t("advanced"), open=False):
            with gr.Row():
                lambda_l1 = gr.Number(first.lambda_l1, label=t("lambda_l1"), minimum=0)
                lambda_kl = gr.Number(first.lambda_kl, label=t("lambda_kl"), minimum=0)
            with gr.Row():
                steps = gr.Number(100, precision=0, minimum=1, maximum=2000, label=t("steps"))
                epochs = gr.Number(100, precision=0, minimum=1, maximum=200, label=t("epochs"))
                seed = gr.Number(1, precision=0, label=t("seed"))
        with gr.Row():
            tune = gr.Button(t("tune"), variant="primary")
            stop = gr.Button(t("stop"), variant="stop")
        tune_status = gr.Markdown(elem_id="tune-status")
        swap = gr.Button(visible=False, size="sm", variant="secondary", elem_id="swap-prompts")
        estimate_status = gr.Markdown(elem_id="estimate-status")
        curve = gr.Plot(label=t("progress"), elem_id="training-curve", format="png")
        paying_plot = gr.Plot(label=t("paying_plot"), elem_id="paying-plot", format="png",
                              visible=False)
    return SimpleNamespace(recipe=recipe, cold_start=cold_start, tune_status=tune_status,
                           paying_plot=paying_plot,
                           curve=curve, tune=tune,
                           stop=stop, lambda_l1=lambda_l1, lambda_kl=lambda_kl, steps=steps,
                           epochs=epochs, seed=seed, swap=swap, estimate_status=estimate_status)


def _predict_tab() -> SimpleNamespace:
    """Step 4: a scan; its probabilities by three classifiers, its map, its report and the
    nearest examples."""
    with gr.Tab(t("tab_predict")):
        with gr.Row():
            with gr.Column(scale=2):
                scan = gr.File(type="filepath", label=t("predict_upload"),
                               elem_id="predict-scan")
                # the sample flow has a scan to predict too
                sample_scan = gr.Button(t("sample_to_predict"), size="sm", variant="secondary",
                                        elem_id="sample-to-predict")
                predict_window, predict_level, predict_width, predict_index, predict_volume_of = \
                    _window_controls("predict", volumes=True)
                # a volume seen whole before it is predicted: a click predicts that slice
                predict_strip = gr.Gallery(label=t("strip"), visible=False, columns=12,
                                           height="auto", object_fit="contain",
                                           fit_columns=False, elem_classes="strip",
                                           allow_preview=False,
                                           buttons=[], elem_id="predict-strip")
                predict_strip_slices = gr.State(None)
                with gr.Row():
                    predict = gr.Button(t("predict"), variant="primary")
                    predict_volume = gr.Button(t("predict_volume"), variant="secondary",
                                               elem_id="predict-volume")
                predict_status = gr.Markdown(elem_id="predict-status")
            with gr.Column(scale=3):
                with gr.Row():
                    scan_view = gr.Image(type="filepath", label=t("scan_view"), interactive=False,
                                         height=300, elem_id="scan-view", buttons=[],
                                         alt_text=t("scan_view"))
                    heat = gr.Image(type="filepath", label=t("map"), interactive=False,
                                    height=300, elem_id="attention-map", buttons=[],
                                    alt_text=t("map"))
                legend = gr.Image(colorbar(width=360), show_label=False, interactive=False,
                                  container=False, height=44, buttons=[], elem_id="legend",
                                  alt_text=t("colour_map"))
                with gr.Row():
                    map_class = gr.Dropdown([], label=t("map_class"), elem_id="map-class")
                    cmap = gr.Radio(["jet", "cividis"], value="jet", label=t("colour_map"),
                                    elem_id="colour-map")
                alpha = gr.Slider(0, 1, value=0.45, step=0.05, label=t("opacity"),
                                  elem_id="opacity")
                report = gr.DownloadButton(t("report"), value=None, elem_id="report")
        # a volume predicted slice by slice: the probabilities along it, and the slice shown
        volume_plot = gr.Plot(label=t("volume_plot"), format="png", visible=False,
                              elem_id="volume-plot")
        volume_slice = gr.Slider(0, 1, value=0, step=1, label=t("volume_slice"), visible=False,
                                 elem_id="volume-slice")
        volume_rows = gr.JSON(visible=False)  # the API's answer: one entry per slice
        volume_step = gr.Number(0, precision=0, visible=False)  # every slice (up to 64)
        # the three classifiers side by side, then what the scan resembles
        with gr.Row(equal_height=True):
            tuned_label = gr.Label(num_top_classes=10, label=t("tuned_probs"),
                                   elem_id="tuned-probs")
            zero_label = gr.Label(num_top_classes=10, label=t("zero_shot_probs"),
                                  elem_id="zero-probs")
            baseline_label = gr.Label(num_top_classes=10, label=t("baseline_probs"),
                                      elem_id="baseline-probs")
        nearest = gr.Gallery(label=t("nearest"), columns=6, height=230,
                             fit_columns=False, object_fit="contain", allow_preview=False,
                             elem_id="nearest")
    return SimpleNamespace(predict_volume=predict_volume, volume_plot=volume_plot,
                           volume_slice=volume_slice, volume_rows=volume_rows,
                           volume_step=volume_step,
                           nearest=nearest, tuned_label=tuned_label, zero_label=zero_label,
                           baseline_label=baseline_label, scan=scan, predict_window=predict_window,
                           predict_level=predict_level, predict_width=predict_width,
                           predict_index=predict_index, predict=predict,
                           predict_volume_of=predict_volume_of, predict_strip=predict_strip,
                           predict_strip_slices=predict_strip_slices,
                           predict_status=predict_status, legend=legend, alpha=alpha,
                           report=report, scan_view=scan_view, heat=heat, map_class=map_class,
                           cmap=cmap, sample_scan=sample_scan)


def _evaluate_tab() -> SimpleNamespace:
    """Step 5: a labelled test set, its metrics, confusion matrices and each cell's scans."""
    with gr.Tab(t("tab_evaluate")):
        gr.Markdown(t("eval_intro"))
        with gr.Row():
            test_zip = gr.File(type="filepath", file_types=[".zip"], label=t("eval_zip"),
                               elem_id="test-zip")
            with gr.Column():
                test_files = gr.File(file_count="multiple", type="filepath",
                                     label=t("eval_files"), elem_id="test-files")
                test_class = gr.Dropdown([], label=t("eval_class"), elem_id="test-class")
        test_window, test_level, test_width, test_index = _window_controls("test")
        add_test = gr.Button(t("add_test"))
        test_status = gr.Markdown(elem_id="test-status")
        test_counts = gr.Markdown(elem_id="test-counts")
        run_eval = gr.Button(t("evaluate"), variant="primary")
        eval_status = gr.Markdown(elem_id="eval-status")
        # hidden until there are figures: an empty table shows made-up headers "1 2 3"
        metrics = gr.Dataframe(label=t("metrics"), interactive=False, visible=False,
                               value=None, elem_id="metrics")
        with gr.Row():
            confusion_zero = gr.Plot(show_label=False, elem_id="confusion-zero", format="png")
            confusion_tuned = gr.Plot(show_label=False, elem_id="confusion-tuned",
                                      format="png")
        # from the matrix back to the scans: one cell's test scans with their maps
        cell = gr.Dropdown([], label=t("cell"), visible=False, elem_id="confusion-cell")
        cell_status = gr.Markdown(elem_id="cell-status")
        cell_gallery = gr.Gallery(label=t("cell_scans"), columns=6, height="auto",
                                  fit_columns=False, object_fit="contain",
                                  allow_preview=False, elem_id="cell-gallery")
        promote = gr.Button(t("promote"), visible=False, elem_id="promote")
    return SimpleNamespace(test_window=test_window, test_level=test_level, test_width=test_width,
                           test_index=test_index, add_test=add_test, test_status=test_status,
                           test_counts=test_counts, run_eval=run_eval, eval_status=eval_status,
                           metrics=metrics, cell=cell, cell_status=cell_status,
                           cell_gallery=cell_gallery, promote=promote, test_zip=test_zip,
                           confusion_zero=confusion_zero, confusion_tuned=confusion_tuned,
                           test_files=test_files, test_class=test_class)


def _prompts_tab() -> SimpleNamespace:
    """Step 6: save and load the tuned prompts."""
    with gr.Tab(t("tab_prompts")):
        save = gr.DownloadButton(t("save_prompts"), value=None, elem_id="save-prompts")
        load = gr.File(type="filepath", file_types=[".safetensors"], label=t("load_prompts"),
                       elem_id="load-prompts")
        prompts_status = gr.Markdown(elem_id="prompts-status")
        gr.Markdown(f"### {t('workspace')}", elem_id="workspace-heading")
        save_workspace = gr.Button(t("save_workspace"), elem_id="save-workspace")
        with gr.Column(visible=False) as workspace_box:  # shown while it holds a file
            workspace_file = gr.File(label=t("workspace_file"), interactive=False,
                                     elem_id="workspace-file")
        open_workspace = gr.File(type="filepath", file_types=[".zip"],
                                 label=t("open_workspace"), elem_id="open-workspace")
        workspace_status = gr.Markdown(elem_id="workspace-status")
    return SimpleNamespace(save=save, load=load, prompts_status=prompts_status,
                           save_workspace=save_workspace, workspace_file=workspace_file,
                           workspace_box=workspace_box,
                           open_workspace=open_workspace, workspace_status=workspace_status)


def _outputs(ui: SimpleNamespace, session: gr.State, names: tuple[str, ...]) -> dict:
    """The components of a reply's output names (`session` is the state)."""
    return {name: session if name == "session" else getattr(ui, name) for name in names}


def build_demo(studio: Studio, mcp: bool = False) -> gr.Blocks:
    """The page, the step endpoints (one browser or `gradio_client` session each), and the
    stateless tools. With `mcp`, only the tools are documented, and so only they are MCP tools
    (a tool's `gr.State` would be reset at every call); the step endpoints stay callable."""
    gpu.when_on_cpu(replies.tell_cpu_path)  # a toast where a step falls back to the CPU
    first = presets.modality("MRI")
    first_organ = first.organs[0] if first.organs else None

    with StudioBlocks(title="Biomed-DPT Studio",
                   delete_cache=(storage.SWEEP_EVERY_S, storage.MAX_AGE_S)) as demo:
        # Each browser session's Session is made by its first event (after the model load).
        session = gr.State(None, delete_callback=studio.forget)
        with gr.Column(elem_id="masthead"):
            gr.Markdown(f"# {EN['title']}")
            gr.Markdown(t("intro"), elem_classes="intro")
            gr.Markdown(t("disclaimer"), elem_classes="disclaimer")
            gr.Markdown(t("privacy"), elem_classes="privacy", elem_id="privacy")
            delete_work = gr.Button(t("delete_my_work"), size="sm", variant="secondary",
                                    elem_id="delete-my-work")
            status = gr.Markdown(studio.status(), elem_id="model-status")
            # the page's work: found again on the server after a reload by a random key kept
            # in the browser, or said why not (cleared for being idle, open in another tab)
            work_keys = gr.BrowserState([], storage_key=WORK_KEYS_STORAGE)
            work_notice = gr.Markdown(elem_id="work-notice")
            take_over = gr.Button(t("take_over"), size="sm", variant="primary", visible=False,
                                  elem_id="take-over")
        with gr.Row(visible=False) as model_actions:
            retry = gr.Button(t("retry_model"), size="sm")
            use_demo = gr.Button(t("use_demo_model"), size="sm", variant="secondary")
        poll = gr.Timer(1.0, active=not studio.ready)
        with gr.Tabs(overflow_behavior="wrap", elem_id="steps"):  # no "..." menu on a phone
            ui = SimpleNamespace(**vars(_task_tab(first, first_organ, studio.lessons)),
                                 **vars(_examples_tab(studio, demo, session)),
                                 **vars(_tune_tab(first)), **vars(_predict_tab()),
                                 **vars(_evaluate_tab()), **vars(_prompts_tab()))

        # ---- wiring ---------------------------------------------------------------------
        model_view = {"status": status, "poll": poll, "model_actions": model_actions}
        page = {**model_view, **{name: getattr(ui, name) for name in LOAD_OUTPUTS[3:]}}
        loaded_page = demo.load(by_name(studio.on_load, page), None, list(page.values()),
                                queue=False, api_name="status")
        ui.work_keys, ui.work_notice, ui.take_over = work_keys, work_notice, take_over
        came = _outputs(ui, session, PAGE_WORK_OUTPUTS)
        _show_work(loaded_page.then(by_name(studio.arrive, came), work_keys,
                                    list(came.values()), queue=False,
                                    api_visibility="private"), studio, ui, session)
        _show_work(take_over.click(by_name(studio.take_over, came), [session, work_keys],
                                   list(came.values()), queue=False,
                                   api_visibility="private"), studio, ui, session)
        demo.unload(studio.close_session)
        poll.tick(by_name(studio.status_until_ready, model_view), None, list(model_view.values()),
                  queue=False, api_visibility="private")
        retry.click(by_name(studio.retry_load, model_view), None, list(model_view.values()),
                    queue=False, api_visibility="private")
        use_demo.click(by_name(studio.use_demo_model, model_view), None,
                       list(model_view.values()), queue=False, api_visibility="private")
        for upload in (ui.files, ui.scan, ui.test_zip, ui.test_files, ui.load,
                       ui.open_workspace):
            upload.upload(studio.remember_upload, upload, None, queue=False,
                          api_visibility="private")

        ui.modality.input(studio.modality_changed, ui.modality, [ui.organ, ui.template],
                          queue=False, api_visibility="private")
        ui.organ.input(studio.organ_changed, [ui.modality, ui.organ], ui.template, queue=False,
                       api_visibility="private")
        preset = _outputs(ui, session, PRESET_OUTPUTS)
        ui.preset.input(by_name(studio.preset_chosen, preset), ui.preset, list(preset.values()),
                        queue=False, api_visibility="private")
        task = _outputs(ui, session, TASK_OUTPUTS)
        ui.apply.click(by_name(studio.set_task, task),
                       [session, ui.modality, ui.organ, ui.template, ui.table, ui.lambda_l1,
                        ui.lambda_kl], list(task.values()),
                       api_name="set_task").then(_bump, ui.cards_rev, ui.cards_rev, queue=False,
                                                 api_visibility="private")

        samples = _outputs(ui, session, SAMPLE_OUTPUTS)
        deleted = _outputs(ui, session, DELETE_OUTPUTS)
        _show_work(delete_work.click(by_name(studio.delete_my_work, deleted), session,
                                     list(deleted.values()), api_name="delete_my_work"),
                   studio, ui, session)
        lesson_view = _outputs(ui, session, LESSON_OUTPUTS)
        _show_work(ui.open_lesson.click(by_name(studio.open_lesson, lesson_view),
                                        [session, ui.lesson], list(lesson_view.values()),
                                        api_name="open_lesson"), studio, ui, session)
        _show_work(ui.use_samples.click(
            by_name(studio.use_samples, samples), [session, ui.samples], list(samples.values()),
            api_name="use_samples", concurrency_id="infer",
            concurrency_limit=INFER_CONCURRENCY), studio, ui, session)

        view_inputs = [ui.files, ui.window, ui.level, ui.width, ui.index, ui.volume]
        view = _outputs(ui, session, VIEW_OUTPUTS)
        shown = by_name(studio.preview, view)
        ranged = _outputs(ui, session, RANGE_OUTPUTS)
        range_inputs = [ui.every_slice, ui.range_first, ui.range_last, ui.index,
                        ui.strip_slices]
        # other files in the viewer: their own frame or slice (the middle one) of their first
        # volume, never the numbers left from the files before
        viewed = _outputs(ui, session, (*VIEW_OUTPUTS, *RANGE_OUTPUTS, "index", "every_slice"))
        ui.files.change(by_name(studio.preview_new_files, viewed), view_inputs[:4],
                        list(viewed.values()), concurrency_id="infer",
                        concurrency_limit=INFER_CONCURRENCY, api_visibility="private")
        for trigger in (ui.window.input, ui.index.submit, ui.level.submit, ui.width.submit,
                        ui.volume.submit):
            trigger(shown, view_inputs, list(view.values()), concurrency_id="infer",
                    concurrency_limit=INFER_CONCURRENCY, api_visibility="private")
        # the slider, or a click on the strip, picks the frame or slice that will be added,
        # and shows it (in the browser: a number typed past the last frame reaches the
        # viewer, which says there is no such frame, instead of failing in the slider's own
        # bounds check)
        ui.frame.release(None, ui.frame, ui.index, js="(k) => Math.round(k)", queue=False,
                         api_visibility="private").then(
            shown, view_inputs, list(view.values()), concurrency_id="infer",
            concurrency_limit=INFER_CONCURRENCY, api_visibility="private")
        ui.strip.select(studio.strip_clicked, ui.strip_slices, ui.index, queue=False,
                        api_visibility="private").then(
            shown, view_inputs, list(view.values()), concurrency_id="infer",
            concurrency_limit=INFER_CONCURRENCY, api_visibility="private")
        # every slice from ... to ...: its count said before anything is added
        for trigger in (ui.every_slice.input, ui.range_first.input, ui.range_last.input):
            trigger(by_name(studio.range_said, ranged), range_inputs, list(ranged.values()),
                    queue=False, api_visibility="private", show_progress="hidden")
        added = _outputs(ui, session, ADD_OUTPUTS)
        ui.add.click(
            by_name(studio.add_examples, added),
            [session, ui.files, ui.example_class, ui.window, ui.level, ui.width, ui.index,
             ui.volume, ui.every_slice, ui.range_first, ui.range_last],
            list(added.values()), api_name="add_examples", concurrency_id="infer",
            concurrency_limit=INFER_CONCURRENCY).then(
            _bump, ui.cards_rev, ui.cards_rev, queue=False, api_visibility="private")
        # whenever the examples change (the cards' count is bumped), their features are
        # prepared in the background, in the encoding line
        prepared = {"session": session, "features_status": ui.features_status}
        ui.cards_rev.change(by_name(studio.prepare_features, prepared), session,
                            list(prepared.values()), concurrency_id="encode",
                            concurrency_limit=ENCODE_CONCURRENCY, api_visibility="private")
        # the unlabelled pool: its features prepared in the background as the examples' are
        pooled = _outputs(ui, session, POOL_OUTPUTS)
        ui.add_to_pool.click(
            by_name(studio.add_to_pool, pooled),
            [session, ui.pool_files, ui.window, ui.level, ui.width, ui.index, ui.volume],
            list(pooled.values()), api_name="add_to_pool", concurrency_id="infer",
            concurrency_limit=INFER_CONCURRENCY).then(
            by_name(studio.prepare_features, prepared), session, list(prepared.values()),
            concurrency_id="encode", concurrency_limit=ENCODE_CONCURRENCY,
            api_visibility="private")
        suggested = _outputs(ui, session, SUGGEST_OUTPUTS)
        ui.label_next.click(by_name(studio.suggest, suggested), [session, ui.pool_order],
                            list(suggested.values()), api_name="suggest",
                            concurrency_id="infer", concurrency_limit=INFER_CONCURRENCY)
        labelled = _outputs(ui, session, LABEL_OUTPUTS)
        ui.label_pool.click(by_name(studio.label_pool_scan, labelled),
                            [session, ui.pool_uid, ui.pool_label, ui.suggestions],
                            list(labelled.values()), api_name="label_pool_scan").then(
            _bump, ui.cards_rev, ui.cards_rev, queue=False, api_visibility="private")
        mapped = _outputs(ui, session, MAP_OUTPUTS)
        ui.draw_map.click(by_name(studio.draw_feature_map, mapped), session,
                          list(mapped.values()), api_visibility="private",
                          concurrency_id="infer", concurrency_limit=INFER_CONCURRENCY)
        ui.cards_rev.change(by_name(studio.map_again, mapped), [session, ui.map_points],
                            list(mapped.values()), api_visibility="private",
                            concurrency_id="infer", concurrency_limit=INFER_CONCURRENCY)
        picked = _outputs(ui, session, ("map_status", "map_pick"))
        ui.feature_map.select(by_name(studio.map_clicked, picked), [session, ui.map_points],
                              list(picked.values()), api_visibility="private", queue=False)
        removed = _outputs(ui, session, REMOVE_OUTPUTS)
        ui.remove.click(by_name(studio.remove_selected, removed), session, list(removed.values()),
                        api_name="remove_selected").then(_bump, ui.cards_rev, ui.cards_rev,
                                                         queue=False, api_visibility="private")

        # a run, then its held-out estimate as an event of its own (in the tuning line too), so
        # every button of the page answers while the estimate runs
        tuned = _outputs(ui, session, TUNE_OUTPUTS)
        estimate = _outputs(ui, session, ESTIMATE_OUTPUTS)
        ui.tune.click(by_name(studio.tune, tuned),
                      [session, ui.recipe, ui.lambda_l1, ui.lambda_kl, ui.steps, ui.epochs,
                       ui.seed, ui.cold_start], list(tuned.values()), api_name="tune",
                      concurrency_id="tune", concurrency_limit=TUNING_SESSIONS,
                      show_progress_on=[ui.tune_status], trigger_mode="multiple").then(
            by_name(studio.estimate, estimate), session, list(estimate.values()),
            api_name="estimate", concurrency_id="tune", concurrency_limit=TUNING_SESSIONS,
            show_progress_on=[ui.estimate_status]).then(
            studio.paying_plot, session, ui.paying_plot, queue=False, api_visibility="private")
        # Save with nothing tuned says why instead of doing nothing
        ui.save.click(studio.save_clicked, session, None, api_visibility="private",
                      concurrency_limit=None, show_progress="hidden")
        stopped = _outputs(ui, session, STOP_OUTPUTS)
        ui.stop.click(by_name(studio.stop, stopped), session, list(stopped.values()),
                      api_name="stop", concurrency_limit=None, show_progress="hidden")
        ui.swap.click(by_name(studio.swap_prompts, tuned), session, list(tuned.values()),
                      api_name="swap_prompts", concurrency_id="infer",
                      concurrency_limit=INFER_CONCURRENCY).then(
            by_name(studio.estimate, estimate), session, list(estimate.values()),
            api_visibility="private", concurrency_id="tune", concurrency_limit=TUNING_SESSIONS,
            show_progress_on=[ui.estimate_status]).then(
            studio.paying_plot, session, ui.paying_plot, queue=False, api_visibility="private")

        ui.sample_scan.click(studio.sample_scan, session, ui.scan, api_visibility="private",
                             concurrency_limit=None)
        # the prediction first; its report is made after it is on screen, in its own line
        map_inputs = [session, ui.map_class, ui.alpha, ui.cmap]

        def predicting(trigger, handler, inputs, names, api_name, report_api=None):
            """A prediction shown, then its report made (the button waits for it)."""
            outputs = _outputs(ui, session, names)
            trigger(studio.report_pending, None, ui.report, queue=False,
                    api_visibility="private").then(
                by_name(handler, outputs), inputs, list(outputs.values()), api_name=api_name,
                api_visibility="public" if api_name else "private", concurrency_id="infer",
                concurrency_limit=INFER_CONCURRENCY).then(
                studio.report, map_inputs, ui.report, api_name=report_api,
                api_visibility="public" if report_api else "private", concurrency_id="report",
                concurrency_limit=REPORT_CONCURRENCY).then(
                studio.report_ready, None, ui.report, queue=False, api_visibility="private")

        view = [session, ui.scan, ui.predict_window, ui.predict_level, ui.predict_width]
        looks = [ui.alpha, ui.cmap, ui.predict_volume_of]
        predicting(ui.predict.click, studio.predict, [*view, ui.predict_index, *looks],
                   PREDICT_OUTPUTS, "predict", report_api="report")
        # every slice of a volume; sliding then shows another slice with its map
        predicting(ui.predict_volume.click, studio.predict_volume,
                   [*view, ui.volume_step, *looks], VOLUME_OUTPUTS, "predict_volume")
        predicting(ui.volume_slice.release, studio.show_slice,
                   [*view, ui.volume_slice, *looks], SLICE_OUTPUTS, "show_slice")
        # a scan chosen: of a volume, its strip of slices (and its 4-D volume's box); a click
        # on one predicts that slice
        stripped = _outputs(ui, session, STRIP_OUTPUTS)
        strip_inputs = [ui.scan, ui.predict_window, ui.predict_level, ui.predict_width,
                        ui.predict_volume_of]
        renewed = _outputs(ui, session, (*STRIP_OUTPUTS, "predict_index"))
        ui.scan.change(by_name(studio.predict_new_scan, renewed), strip_inputs[:4],
                       list(renewed.values()), concurrency_id="infer",
                       concurrency_limit=INFER_CONCURRENCY, api_visibility="private")
        ui.predict_volume_of.submit(by_name(studio.predict_strip, stripped), strip_inputs,
                                    list(stripped.values()), concurrency_id="infer",
                                    concurrency_limit=INFER_CONCURRENCY,
                                    api_visibility="private")
        picked = ui.predict_strip.select(studio.strip_clicked, ui.predict_strip_slices,
                                         ui.predict_index, queue=False,
                                         api_visibility="private")
        predicting(picked.then, studio.predict, [*view, ui.predict_index, *looks],
                   PREDICT_OUTPUTS, None)
        for trigger, name in ((ui.map_class.input, "change_map"), (ui.alpha.release, None),
                              (ui.cmap.input, None)):
            trigger(studio.report_pending, None, ui.report, queue=False,
                    api_visibility="private").then(
                studio.change_map, map_inputs, [session, ui.heat], api_name=name,
                api_visibility="public" if name else "private", concurrency_id="infer",
                concurrency_limit=INFER_CONCURRENCY).then(
                studio.report, map_inputs, ui.report, concurrency_id="report",
                concurrency_limit=REPORT_CONCURRENCY, api_visibility="private").then(
                studio.report_ready, None, ui.report, queue=False, api_visibility="private")
        ui.cmap.input(studio.legend, ui.cmap, ui.legend, queue=False, api_visibility="private")

        tests = _outputs(ui, session, TEST_OUTPUTS)
        ui.add_test.click(by_name(studio.add_test_scans, tests),
                          [session, ui.test_zip, ui.test_files, ui.test_class, ui.test_window,
                           ui.test_level, ui.test_width, ui.test_index], list(tests.values()),
                          api_name="add_test_scans", concurrency_id="infer",
                          concurrency_limit=INFER_CONCURRENCY)
        evaluated = _outputs(ui, session, EVALUATE_OUTPUTS)
        cell = _outputs(ui, session, CELL_OUTPUTS)
        ui.run_eval.click(by_name(studio.evaluate, evaluated), session, list(evaluated.values()),
                          api_name="evaluate", concurrency_id="infer",
                          concurrency_limit=INFER_CONCURRENCY).then(
            by_name(studio.show_cell, cell), [session, ui.cell], list(cell.values()),
            concurrency_id="infer", concurrency_limit=INFER_CONCURRENCY, api_visibility="private")
        ui.cell.input(by_name(studio.show_cell, cell), [session, ui.cell], list(cell.values()),
                      api_name="show_cell", concurrency_id="infer",
                      concurrency_limit=INFER_CONCURRENCY)
        ui.cell_gallery.select(studio.select_cell_scan, session, [session, ui.cell_status],
                               queue=False, api_visibility="private")
        promoted = _outputs(ui, session, PROMOTE_OUTPUTS)
        ui.promote.click(by_name(studio.promote_cell_scan, promoted), session,
                         list(promoted.values()), api_name="promote_cell_scan").then(
            _bump, ui.cards_rev, ui.cards_rev, queue=False, api_visibility="private")
        loaded = _outputs(ui, session, PROMPTS_OUTPUTS)
        ui.load.upload(by_name(studio.load_prompts, loaded), [session, ui.load],
                       list(loaded.values()), api_name="load_prompts").then(
            _bump, ui.cards_rev, ui.cards_rev, queue=False, api_visibility="private")
        saved = _outputs(ui, session, SAVE_WORKSPACE_OUTPUTS)
        ui.save_workspace.click(by_name(studio.save_workspace, saved), session,
                                list(saved.values()), api_name="save_workspace").then(
            _shown_if_any, ui.workspace_file, ui.workspace_box, queue=False,
            api_visibility="private")
        opened = _outputs(ui, session, OPEN_WORKSPACE_OUTPUTS)
        _show_work(ui.open_workspace.upload(by_name(studio.open_workspace, opened),
                                            [session, ui.open_workspace], list(opened.values()),
                                            api_name="open_workspace"), studio, ui, session)
        offered = tools.register(studio, {"infer": ("infer", INFER_CONCURRENCY),
                                          "tune": ("tune", TUNING_SESSIONS)})
    if mcp:  # the tools only: every other endpoint stays callable, undocumented
        for fn in demo.fns.values():
            if fn.api_visibility == "public" and fn.api_name not in offered.names:
                fn.api_visibility = "undocumented"
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=4)
    return demo


def launch_options(mcp: bool = False) -> dict:
    """Options that belong to `launch()` in Gradio 6: privacy, look, and the MCP server (at
    /gradio_api/mcp/) when asked for."""
    return dict(run_history=False, max_file_size=MAX_UPLOAD, i18n=I18N, css=CSS, head=HEAD,
                theme=theme(), show_error=False, mcp_server=mcp)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Biomed-DPT Studio: the clinician app.")
    parser.add_argument("--backbone", default="biomedclip",
                        help="biomedclip (default), hf-hub:ORG/NAME, local-dir:PATH, or "
                             "tiny-biomedclip to try the interface offline")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="make a temporary public link")
    parser.add_argument("--mcp", action="store_true",
                        help="also serve the stateless tools to agents as an MCP server "
                             "(streamable HTTP at /gradio_api/mcp/)")
    parser.add_argument("--lesson", action="append", default=[], metavar="PATH",
                        help="a workspace file (.biomed-dpt.zip) offered as a lesson beside the "
                             "sample scans; each student works on their own copy (repeatable; "
                             f"also ${LESSONS_ENV}, paths separated by '{os.pathsep}')")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="longest a tuning run may take, in seconds (default 300; 90 on "
                             "ZeroGPU, where a run is one GPU call)")
    return parser.parse_args(argv)


def create_app(argv: list[str] | None = None) -> tuple[gr.Blocks, argparse.Namespace]:
    """The app. On ZeroGPU the model is loaded here, at import, before the GPU workers fork
    from this process; elsewhere in a background thread while the page is served."""
    args = parse_args(argv)
    try:
        gpu.check_versions()  # emulating ZeroGPU: on versions it runs, or not at all
    except gpu.UnsupportedOnZeroGPU as refused:
        raise SystemExit(f"{gpu.MODE_ENV}={gpu.mode()}: {refused}") from None
    storage.start()
    zerogpu = gpu.mode() == "zerogpu"
    budget = args.time_budget if args.time_budget is not None else (
        ZEROGPU_TIME_BUDGET_S if zerogpu else TIME_BUDGET_S)
    studio = Studio.start(args.backbone, args.device, background=not zerogpu,
                          time_budget_s=budget)
    from_env = [p for p in os.environ.get(LESSONS_ENV, "").split(os.pathsep) if p]
    studio.offer_lessons([*args.lesson, *from_env])
    return build_demo(studio, args.mcp), args
