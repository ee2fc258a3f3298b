"""The app's layout: five steps as tabs, wired to `Studio` handlers.

Heavy events (tune, predict, maps, report) share one queue slot ("heavy") so a 2-core machine
serves several users one heavy job at a time; light events run beside them. The Stop button
bypasses the queue so it is honoured while tuning runs.
"""
from __future__ import annotations

import argparse

import gradio as gr

from core import presets
from core.overlay import colorbar
from demo.handlers import AUTO_WINDOW, WINDOW_CHOICES, Studio
from demo.strings import EN, KO

I18N = gr.I18n(en=EN, ko=KO)
QUEUE_SIZE = 16
MAX_UPLOAD = "200mb"
CSS = ".disclaimer {border-left: 4px solid #c33; padding-left: 10px;}"


def t(key: str):
    return I18N(key)


def build_demo(studio: Studio) -> gr.Blocks:
    modalities = presets.load_modalities()
    tasks = presets.load_tasks()
    first = presets.modality("MRI")
    first_organ = first.organs[0] if first.organs else None

    with gr.Blocks(title="Biomed-DPT Studio", delete_cache=(1800, 3600)) as demo:
        # Each browser session's Session is made by its first event (see handlers.ensure), so
        # the page is served before the deep-learning stack it needs is imported.
        session = gr.State(None, delete_callback=lambda s: s and s.close())
        gr.Markdown(f"# {EN['title']}")
        gr.Markdown(t("intro"))
        gr.Markdown(t("disclaimer"), elem_classes="disclaimer")
        status = gr.Markdown(studio.status())
        poll = gr.Timer(2.0, active=not studio.ready)

        with gr.Tab(t("tab_task")):
            preset = gr.Dropdown([(task.title, task.id) for task in tasks], value=None,
                                 label=t("preset"), info=t("preset_info"))
            with gr.Row():
                modality = gr.Dropdown([(m.name, m.id) for m in modalities], value=first.id,
                                       label=t("modality"))
                organ = gr.Dropdown(list(first.organs), value=first_organ, label=t("organ"),
                                    allow_custom_value=True)
            template = gr.Textbox(presets.template_for(first.id, first_organ), label=t("template"))
            table = gr.Dataframe(headers=[EN["class_name"], EN["class_descriptions"]],
                                 datatype=["str", "str"], column_count=(2, "fixed"),
                                 row_count=(4, "dynamic"), type="array", wrap=True,
                                 value=[["", ""]] * 4, label=t("classes"), interactive=True)
            apply = gr.Button(t("apply_task"), variant="primary")
            task_status = gr.Markdown()

        with gr.Tab(t("tab_examples")):
            with gr.Row():
                example_class = gr.Dropdown([], label=t("example_class"))
                window = gr.Dropdown(WINDOW_CHOICES, value=AUTO_WINDOW, label=t("window"))
                index = gr.Number(-1, precision=0, label=t("slice"))
            files = gr.File(file_count="multiple", type="filepath", label=t("upload_examples"),
                            elem_id="example-files")
            add = gr.Button(t("add_examples"), variant="primary")
            example_status = gr.Markdown()
            counts = gr.Markdown()
            gallery = gr.Gallery(label=t("gallery"), columns=8, height=320, allow_preview=False)
            remove = gr.Button(t("remove_selected"))

        with gr.Tab(t("tab_tune")):
            recipe = gr.Radio(["fast", "paper"], value="fast", label=t("recipe"), info=t("recipe_info"))
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
            tune_status = gr.Markdown()
            plot = gr.LinePlot(None, x="step", y="value", color="series", label=t("progress"),
                               x_title="step", y_title="loss / accuracy", height=260)

        with gr.Tab(t("tab_predict")):
            with gr.Row():
                with gr.Column():
                    scan = gr.File(type="filepath", label=t("predict_upload"), elem_id="predict-scan")
                    with gr.Row():
                        predict_window = gr.Dropdown(WINDOW_CHOICES, value=AUTO_WINDOW,
                                                     label=t("window"))
                        predict_index = gr.Number(-1, precision=0, label=t("slice"))
                    predict = gr.Button(t("predict"), variant="primary")
                    predict_status = gr.Markdown()
                    tuned_label = gr.Label(num_top_classes=10, label=t("tuned_probs"))
                    zero_label = gr.Label(num_top_classes=10, label=t("zero_shot_probs"))
                with gr.Column():
                    heat = gr.Image(type="pil", label=t("map"), interactive=False, height=360,
                                    elem_id="attention-map")
                    gr.Image(colorbar(width=360), show_label=False, interactive=False,
                             container=False, height=44, buttons=[])
                    map_class = gr.Dropdown([], label=t("map_class"))
                    alpha = gr.Slider(0, 1, value=0.45, step=0.05, label=t("opacity"))
                    report = gr.DownloadButton(t("report"))

        with gr.Tab(t("tab_evaluate")):
            gr.Markdown(t("eval_intro"))
            with gr.Row():
                test_zip = gr.File(type="filepath", file_types=[".zip"], label=t("eval_zip"),
                                   elem_id="test-zip")
                with gr.Column():
                    test_files = gr.File(file_count="multiple", type="filepath",
                                         label=t("eval_files"), elem_id="test-files")
                    test_class = gr.Dropdown([], label=t("eval_class"))
            with gr.Row():
                test_window = gr.Dropdown(WINDOW_CHOICES, value=AUTO_WINDOW, label=t("window"))
                test_index = gr.Number(-1, precision=0, label=t("slice"))
            add_test = gr.Button(t("add_test"))
            test_status = gr.Markdown()
            test_counts = gr.Markdown()
            run_eval = gr.Button(t("evaluate"), variant="primary")
            eval_status = gr.Markdown()
            metrics = gr.Dataframe(label=t("metrics"), interactive=False)
            with gr.Row():
                confusion_zero = gr.Plot(label=t("confusion_zero"))
                confusion_tuned = gr.Plot(label=t("confusion_tuned"))

        with gr.Tab(t("tab_prompts")):
            save = gr.DownloadButton(t("save_prompts"))
            load = gr.File(type="filepath", file_types=[".safetensors"], label=t("load_prompts"))
            prompts_status = gr.Markdown()

        # ---- wiring ---------------------------------------------------------------------
        demo.load(studio.status, None, status, queue=False, api_name="status")
        poll.tick(studio.status_until_ready, None, [status, poll], queue=False)
        modality.change(studio.modality_changed, modality, [organ, template], queue=False)
        organ.change(studio.organ_changed, [modality, organ], template, queue=False)
        preset.change(studio.preset_chosen, preset,
                      [modality, organ, template, table, lambda_l1, lambda_kl], queue=False)
        apply.click(studio.set_task, [session, modality, organ, template, table, lambda_l1, lambda_kl],
                    [session, task_status, example_class, test_class, gallery, counts],
                    api_name="set_task")
        add.click(studio.add_examples, [session, files, example_class, window, index],
                  [session, files, example_status, gallery, counts], api_name="add_examples",
                  concurrency_id="heavy", concurrency_limit=1)
        gallery.select(studio.select_example, session, [session, example_status], queue=False)
        remove.click(studio.remove_selected, session, [session, example_status, gallery, counts],
                     api_name="remove_selected")
        tune.click(studio.tune, [session, recipe, lambda_l1, lambda_kl, steps, epochs, seed],
                   [session, tune_status, plot, map_class], api_name="tune",
                   concurrency_id="heavy", concurrency_limit=1)
        stop.click(studio.stop, session, tune_status, queue=False, api_name="stop")
        predict.click(studio.predict, [session, scan, predict_window, predict_index, alpha],
                      [session, tuned_label, zero_label, heat, map_class, predict_status],
                      api_name="predict", concurrency_id="heavy", concurrency_limit=1)
        map_class.input(studio.change_map, [session, map_class, alpha], [session, heat],
                        concurrency_id="heavy", concurrency_limit=1)
        alpha.release(studio.change_map, [session, map_class, alpha], [session, heat],
                      concurrency_id="heavy", concurrency_limit=1)
        report.click(studio.report, [session, map_class, alpha], report, api_name="report",
                     concurrency_id="heavy", concurrency_limit=1)
        add_test.click(studio.add_test_scans,
                       [session, test_zip, test_files, test_class, test_window, test_index],
                       [session, test_zip, test_files, test_status, test_counts],
                       api_name="add_test_scans", concurrency_id="heavy", concurrency_limit=1)
        run_eval.click(studio.evaluate, session,
                       [session, eval_status, metrics, confusion_zero, confusion_tuned],
                       api_name="evaluate", concurrency_id="heavy", concurrency_limit=1)
        save.click(studio.save_prompts, session, save, api_name="save_prompts")
        load.upload(studio.load_prompts, [session, load],
                    [session, prompts_status, template, table, example_class, test_class],
                    api_name="load_prompts")
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=4)
    return demo


def launch_options() -> dict:
    """Options that belong to `launch()` in Gradio 6: privacy and look."""
    return dict(run_history=False, max_file_size=MAX_UPLOAD, i18n=I18N, css=CSS,
                theme=gr.themes.Soft(), show_error=False)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Biomed-DPT Studio: the clinician app.")
    parser.add_argument("--backbone", default="biomedclip",
                        help="biomedclip (default), hf-hub:ORG/NAME, local-dir:PATH, or "
                             "tiny-biomedclip to try the interface offline")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="make a temporary public link")
    parser.add_argument("--time-budget", type=float, default=300.0,
                        help="longest a tuning run may take, in seconds")
    return parser.parse_args(argv)


def create_app(argv: list[str] | None = None) -> tuple[gr.Blocks, argparse.Namespace]:
    args = parse_args(argv)
    studio = Studio.start(args.backbone, args.device, background=True,
                          time_budget_s=args.time_budget)
    return build_demo(studio), args
