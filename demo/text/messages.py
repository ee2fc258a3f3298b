"""Server-side text in English and Korean, chosen from the request's language.

`gr.I18n` (see strings.py) translates the page's static labels in the browser; everything the
server writes at run time (status lines, messages, toasts, table headers, window and task names)
comes from here. `UserError` carries a message key, so that the handler that shows it can pick
the user's language.
"""
from __future__ import annotations

from typing import Any

from core.errors import StudioError

EN: dict[str, str] = {
    # toasts
    "toast_problem": "Please check",
    "toast_done": "Done",
    # model status
    "loading": "⏳ Loading the model… ({seconds:.0f} s so far). You can set up the task meanwhile.",
    "still_loading": "The model is still loading ({seconds:.0f} s so far); try again in a moment.",
    "model_failed": "⚠️ **The model could not be loaded.** {problem}",
    "model_failed_actions": "You can try loading it again, or continue with the demo model: "
                            "random weights, so its predictions are meaningless, but every step "
                            "of the workflow is real.",
    "not_loaded": "The model is not loaded. {problem}",
    "model_ready": "Model: `{name}` on {device}.",
    "demo_model": "⚠️ **Demo model** (`{name}`, random weights): its predictions are "
                  "meaningless; use it to learn the workflow.",
    "unexpected": "Something went wrong on our side; your work so far is kept. Please try again.",
    "gpu_quota_title": "No GPU time left",
    "gpu_quota_cpu": "Your GPU time on this Space is used up for now (or no GPU was free in "
                     "time), so this step runs on the CPU: it is slower, and the results are the "
                     "same. Signing in to Hugging Face gives more GPU time.",
    "gpu_aborted": "This step took longer than the GPU time it was given and was stopped; your "
                   "work so far is kept. Try fewer steps, a shorter time limit or fewer scans.",
    "stopped_evaluation": "The evaluation was stopped; press Evaluate again to run it.",
    "unknown_method": "The method {method} is not one this app offers; use one of {methods}.",
    "unknown_slices": "slices can be \"middle\" (the middle slice of a volume) or \"all\" "
                      "(every slice, each with its own answer), not {slices}.",
    "choose_support": "Give a support set: a .zip with one folder per class holding its scans.",
    "support_needs_classes": "The support set needs at least two class folders, each holding "
                             "scans (the folder's name is the class name).",
    "line_too_long": "Too many tuning runs are waiting; try again in a few minutes.",
    "session_expired": "This session was cleared after {minutes} minutes without use, with its "
                       "examples and files. Set the task again, or open a saved workspace "
                       "(step 6) to bring the work back.",
    # step 1
    "task_set": "Task set: {n} classes ({classes}). Now add a few examples of each (step 2).",
    "renamed": "Renamed {old} to {new}; its {n} examples were kept.",
    "class_removed": "Removed the class {name} and its {n} examples.",
    "untuned": "The tuned prompts were for other classes ({classes}); tune again in step 3.",
    "need_task": "Set up the task first: at least two classes (step 1).",
    "too_many_classes": "{n} classes is more than the {limit} this app handles.",
    "task_chosen": "{title}: {description}",
    "samples_added": "Sample scans added: {counts}. They are licensed test images (see "
                     "assets/examples/SOURCES.md), clearly not patients of yours. Tune them in "
                     "step 3.",
    "sample_suffix": " (sample)",
    "last_predicted_name": "last predicted scan",
    "legend_low": "low relevance",
    "legend_high": "high relevance",
    # step 2
    "choose_files": "Choose one or more scans to add.",
    "choose_class": "Choose which class these examples belong to ({classes}).",
    "added_examples": "Added {n} examples of {label}.",
    "added_example": "Added 1 example of {label}.",
    "not_added": "Some files were not added:",
    "duplicate_of": "the same picture as {other}, which is already there; skipped.",
    "too_many_examples": "At most {limit} {kind} can be kept in one session.",
    "too_many_slices": "These {n} slices would pass the limit of {limit} {kind} in one session; "
                       "there is room for {room}. Choose a shorter range.",
    "slices_repeated": "{n} of its {total} slices were the same picture as another example, and "
                       "were added once.",
    "pool_added": "Added {n} scans to the pool ({total} unlabelled in all). Press **Label next** "
                  "to see which to label first.",
    "pool_empty": "The pool is empty: add scans without a class first.",
    "pool_ranked": "The {n} scans (of {total} unlabelled) that labelling would teach most, the most "
                   "useful first. Confirm the guess or pick the class.",
    "map_empty": "Add examples first: the map shows them.",
    "map_drawn": "{examples} examples, {tests} test scans and {pool} unlabelled scans, by their "
                 "image features (the two directions they vary most). Click a point to see its "
                 "scan.",
    "map_with_shown": "The star is the scan predicted in step 4: far from every example, the "
                      "model has seen nothing like it.",
    "map_nothing": "No scan there: click on a point.",
    "map_gone": "That scan is no longer there: draw the map again.",
    "map_is_shown": "The scan predicted in step 4.",
    "map_is_example": "an example of {label}",
    "map_is_test": "a test scan of {label}",
    "map_is_pool": "unlabelled (in the pool)",
    "map_test": "test scans",
    "map_pool": "unlabelled (pool)",
    "map_shown": "the scan in step 4",
    "map_axis": "direction {k} (PCA of the image features)",
    "pool_alike": "Each of the other {n} looks almost the same as one of these to the model: "
                  "label these first.",
    "pool_random": "{n} scans (of {total} unlabelled) picked at random, to compare with the "
                   "ranked ones.",
    "pool_labelled": "Added to {label} (as {name}); {left} left in the pool. Tune again to use "
                     "it.",
    "pool_by_tuned": "the tuned prompts",
    "pool_by_zero": "zero-shot",
    "pool_by_probe": "the linear probe",
    "pool_why_unsure": "Unsure: {guess} {p:.0%} or {runner_up} {q:.0%}.",
    "pool_why_disagree": "The classifiers disagree: {guess} by {who}, {other_guess} by {other}.",
    "pool_why_random": "Picked at random (guess: {guess}, {p:.0%}).",
    "unknown_order": "The order {order} is not one of {orders}.",
    "pool_scan_gone": "That unlabelled scan is no longer in the pool (it was labelled or the "
                      "pool was cleared). Take the suggestions again.",
    "range_needs_ends": "Give the first and the last slice of the range (0 or more).",
    "empty_range": "The range from {first} to {last} holds no slice: the first slice must not "
                   "come after the last.",
    "range_note": "**Add examples** will add every slice from {first} to {last} of each chosen "
                  "file: **{n} examples** per file (a slice that is the same picture as another "
                  "is added once).",
    "unreadable": "{detail}",
    "ct_window_on_other": "{window} is a CT window (Hounsfield units); this file is not CT, so "
                          "its own window was used.",
    "selected": "Selected {name}. Press “Remove selected example” to drop it.",
    "removed": "Removed {name}.",
    "select_first": "Click an example first to select it.",
    "select_in_card": "The selected example is in another card: click one of {label}'s "
                      "examples first, then press this card's Remove.",
    "counts_none": "No task yet.",
    "manual_needs_width": "For a manual window give a level and a width greater than zero.",
    "preview": "{kind}, {rows} × {columns}{frames}. This is the picture the model will see.",
    "preview_frames": ", {label} {index} of 0–{last}",
    "preview_volume": ", volume {volume} of 0–{last}",
    "preview_failed": "This file cannot be shown: {detail}",
    # step 3
    "line_wait": "Waiting for the tuning slot: you are number {position} in line "
                 "(about {seconds:.0f} s).",
    "reading": "Reading the examples: {done}/{total}",
    "step": "Step {done}/{total} · loss {loss:.3f} (CE {ce:.3f}, L1 {l1:.4f}, KL {kl:.4f}) · "
            "train accuracy {accuracy:.0%}",
    "stopping": "Stopping after the current step…",
    "stopped_early_kept": "**Stopped before the first step**: nothing was learned, so the "
                          "previous prompts are kept.",
    "stopped_early_none": "**Stopped before the first step**: nothing was learned, and there "
                          "are no tuned prompts yet.",
    "summary": "**Tuning {how}** after {steps} steps in {seconds:.1f} s ({precision}). "
               "Training accuracy {accuracy:.0%}, loss {loss:.3f}. Classes: {classes}. Predict "
               "in step 4.",
    "how_finished": "finished",
    "encoding": "Preparing the features of the examples: {done}/{total}",
    "features_ready": "Every example's features are ready: tuning now costs only the text "
                      "steps.",
    "features_stopped": "Preparing the features was interrupted; tuning will finish it.",
    "how_converged": "finished (the loss had settled)",
    "paying_tuned": "tuned prompts (held-out estimate ± spread)",
    "paying_baseline": "best baseline of each run",
    "paying_examples": "examples",
    "paying_accuracy": "held-out accuracy",
    "warm_started": "It continued from the prompts tuned before (the classes are the same); "
                    "tick *Start again from the template's words* for a fresh start.",
    "train_accuracy_note": "This is the accuracy on the examples the prompts were tuned on, "
                           "not a measure of how they do on new scans: see the held-out "
                           "estimate below.",
    "estimating": "Estimating accuracy on held-out examples ({folds}-fold cross-validation): "
                  "{done}/{total} methods",
    "estimate_title": "**Held-out estimate** ({folds}-fold cross-validation on your {n} "
                      "examples: each example predicted by a model that never saw it{recipe})",
    "estimate_fast": "; the tuned column re-tuned with the fast recipe",
    "estimate_head": "| method | accuracy | balanced accuracy | spread (± SD over folds) |",
    "estimate_row": "| {method} | {accuracy:.0%} | {balanced:.0%} | ± {std:.0%} |",
    "estimate_stopped": "The held-out estimate was stopped.",
    "too_few_to_estimate": "⚠️ No held-out estimate: every class needs at least two examples.",
    "few_per_class": "⚠️ A class has only {n} examples: with fewer than 4 per class the "
                     "estimate is rough.",
    "unbalanced": "⚠️ The classes differ in size more than 3× ({most} vs {least} examples): "
                  "look at the balanced accuracy.",
    "spread_wide": "⚠️ The spread over folds (± {spread:.0%}) is wider than the difference "
                   "between the tuned prompts and the best baseline ({gap:.0%}): with these "
                   "examples the two cannot be told apart.",
    "method_tuned": "tuned prompts (Biomed-DPT)",
    "method_zero-shot": "zero-shot",
    "method_tip-adapter": "Tip-Adapter (no training)",
    "method_linear-probe": "linear probe",
    "nearest_caption": "{similarity:.2f} · {name}",
    "how_user": "stopped by you",
    "how_budget": "stopped at the time limit",
    "need_examples": "Add at least one example for {classes} (step 2).",
    "curve_loss": "loss",
    "curve_accuracy": "train accuracy (each step's batch)",
    "curve_final": "after tuning, all examples: {accuracy:.0%}",
    "curve_step": "step",
    "curve_empty": "The curve appears here while tuning.",
    # step 4
    "choose_scan": "Choose a scan to classify.",
    "zero_shot_only": "No tuned prompts yet: showing the zero-shot classifier. Tune them in "
                      "step 3.",
    "looks_like": "This file looks like {found}, but the task is {task}.",
    "colour_in_grey": "This picture is in colour, but {task} images are greyscale: it may not "
                      "belong to this task, and the prediction then means nothing.",
    "grey_in_colour": "This picture is greyscale, but {task} images are in colour: it may not "
                      "belong to this task, and the prediction then means nothing.",
    "predict_first": "Predict a scan first.",
    "not_a_class": "{name} is not one of the predicted classes.",
    "predicted": "Top class: {top} ({p:.1%}).",
    "volume_predicted": "Classified {n} of the {total} {label}s one by one, with the {which}"
                        "{every}. The model is most confident about {label} {best}: {top} "
                        "({p:.0%}), shown below with its map. Slide to another {label} to see "
                        "its map.",
    "volume_every": " (one {label} in {step}: the volume has more than {most})",
    "volume_with_tuned": "tuned prompts",
    "volume_with_zero": "zero-shot template (no tuned prompts yet)",
    "volume_progress": "Classifying {label}s: {done}/{total}",
    "volume_single": "This scan has one picture: it was predicted as a single scan.",
    "volume_slice_shown": "Shown: {label} {index} of 0–{last} (most confident: {best}).",
    "volume_shown": "shown: {label} {index}",
    "volume_best": "most confident: {label} {index}",
    "volume_probability": "probability",
    "slice_word": "slice",
    "frame_word": "frame",
    # step 5
    "choose_test": "Choose a zip of class folders, or scans and their class.",
    "choose_test_class": "Choose the class of these scans ({classes}).",
    "added_tests": "Added {n} test scans.",
    "added_test": "Added 1 test scan.",
    "tests_not_added": "Some were not added:",
    "zip_folder": "its folder {folder} is not one of the classes; put each scan in a folder "
                  "named after its class.",
    "need_tests": "Add labelled test scans first (a zip of class folders, or files with their "
                  "class).",
    "evaluated": "{n} test scans. Accuracy {accuracy:.1%}, balanced accuracy {balanced:.1%} "
                 "({which}).",
    "which_tuned": "tuned prompts",
    "which_zero": "zero-shot: no tuned prompts yet",
    "overlap": "⚠️ {n} of the test scans are also training examples: the tuned figures are "
               "optimistic. Test on scans the prompts were not tuned on.",
    "col_metric": "metric",
    "fraction_true": "fraction of the true class",
    "col_zero": "zero-shot",
    "col_tuned": "tuned",
    "col_tip-adapter": "Tip-Adapter",
    "col_linear-probe": "linear probe",
    "m_accuracy": "accuracy",
    "m_balanced": "balanced accuracy",
    "m_macro_f1": "macro F1",
    "m_precision": "precision: {name}",
    "m_recall": "recall: {name}",
    "m_f1": "F1: {name}",
    "confusion_title": "{which}: accuracy {accuracy:.1%}",
    "cell_choice": "true {true} → predicted {predicted} ({n})",
    "cell_shown": "{n} test scans of {true} predicted as {predicted} ({which}), each with the map "
                  "of {predicted}. Click one to select it.",
    "cell_selected": "Selected a scan of {true}. Press “Add to the examples” to teach it.",
    "cell_promoted": "Added it to the examples as {name}; it is no longer a test scan, so "
                     "this cell now holds {n} (evaluate again to update the matrix). Tune "
                     "again in step 3.",
    "cell_select_first": "Click a scan first to select it.",
    "evaluate_first": "Evaluate first; then pick a cell of the confusion matrix.",
    "predicted_class": "predicted class",
    "true_class": "true class",
    # step 6
    "choose_prompts": "Choose a .safetensors prompt file saved by this app.",
    "choose_workspace": "Choose a workspace file (.biomed-dpt.zip) saved by this app.",
    "choose_lesson": "Choose one of the lessons: {lessons}.",
    "work_deleted": "Your work on this server was deleted: its pictures, features, prompts and "
                    "evaluation, and your uploads and downloads (a file uploaded in the last "
                    "{seconds} seconds goes within {seconds} seconds). Start again in step 1.",
    "workspace_wait_for_run": "A tuning run or an evaluation is going: press Stop (step 3) or "
                              "wait for it to end, then open the workspace again.",
    "lesson_opened": "Lesson {lesson}: this copy is yours; what you change here changes "
                     "nobody else's.",
    "workspace_saved": "Saved the workspace as {name} ({held}). Open it here later, in "
                       "another browser or on another machine.",
    "ws_task": "the task",
    "ws_examples": "{n} examples",
    "ws_tests": "{n} test scans",
    "ws_prompts": "the tuned prompts",
    "ws_evaluation": "the evaluation",
    "workspace_opened": "Opened the workspace: {examples} examples, {tests} test scans, "
                        "{prompts}.",
    "workspace_with_prompts": "with its tuned prompts",
    "workspace_without_prompts": "no tuned prompts",
    "workspace_before_kept": "The work you had before was saved as {name} (above): open it "
                             "to go back to it.",
    "work_open_elsewhere": "Your work is open in another tab of this browser. This tab has "
                           "a new, empty workspace of its own; to go on with that work here "
                           "instead, take it over (the other tab then no longer changes it).",
    "work_taken_over": "Your work is now open in another tab of this browser, so this step "
                       "was not done here (it would change the work shown there). Go on in "
                       "that tab, or reload this page and take the work back.",
    "work_taken": "Your work from the other tab is here now; that tab's steps are refused "
                  "from now on.",
    "work_taken_before": "The work this tab had was saved as {name}: it is offered in step 6 "
                         "(open it to go back to it).",
    "work_gone": "That work is no longer on this server (it was deleted, or cleared for being "
                 "idle). Open a saved workspace (step 6) to go on with it.",
    "work_cleared_idle": "Your earlier work was cleared after {minutes} minutes without use, "
                         "with its files, as the note above says. Open a saved workspace "
                         "(step 6) to go on with it.",
    "loaded": "Loaded prompts for {classes} ({modality}). Predict in step 4.",
    "tune_first": "There are no tuned prompts to save yet: tune them in step 3, or load a "
                  "prompts file below.",
    # windows
    "w_auto": "file's own / automatic",
    "w_manual": "manual level and width",
    "w_brain": "CT brain", "w_subdural": "CT subdural", "w_stroke": "CT stroke",
    "w_lung": "CT lung", "w_mediastinum": "CT mediastinum", "w_soft tissue": "CT soft tissue",
    "w_liver": "CT liver", "w_bone": "CT bone",
    # report
    "report_title": "Biomed-DPT Studio report",
    "report_model": "Model: {name}",
    "report_demo": "DEMO MODEL WITH RANDOM WEIGHTS: these predictions are meaningless.",
    "report_task": "Task: {modality}{organ}; classes: {classes}",
    "report_template": "Template: “{template}”",
    "report_view": "Window: {window}; {slice}",
    "report_window_manual": "level {level}, width {width}",
    "report_slice": "frame / slice {index} of 0–{last}",
    "report_single": "single image",
    "report_scan": "Scan (model's view)",
    "report_map": "Attention map: {name}",
    "report_probs": "Class probabilities",
    "report_tuned": "tuned prompts",
    "report_zero": "zero-shot",
    "report_probability": "probability",
    "report_disclaimer": "For research and teaching only. Not a medical device: not for "
                         "diagnosis or treatment.",
    "report_made": "Made {when}",
    "unlike_examples": "This scan is unlike every example: its similarity to the nearest one "
                       "({similarity:.2f}) is lower than any example's to its own nearest "
                       "({floor:.2f}), so these probabilities mean little.",
    "predict_no_examples": "The linear probe and the nearest examples need examples of every "
                           "class: add them in step 2.",
    "predict_no_probe": "The linear probe needs examples of every class: add some for "
                        "{classes} in step 2.",
    # runs and the prompts they leave (each run owns its stop; prompts are never lost)
    "toast_wait": "Please wait",
    "tuning_going": "A tuning run is going: wait for it to finish, or press Stop first.",
    "nothing_running": "Nothing is running, so there is nothing to stop.",
    "stopped_offered": "**Stopped by you after {steps} steps.** Your tuned prompts ({kept} "
                       "steps) are kept; the stopped run's prompts are one click away below.",
    "swap_previous": "Restore the previous prompts ({what})",
    "swap_stopped": "Use the stopped run's prompts ({what})",
    "swap_replaced": "Go back to the prompts you left ({what})",
    "n_steps": "{steps} steps",
    "from_file": "from a file",
    "from_file_tuned": "The prompts in use came from a file (step 6): no curve to show.",
    "swapped": "Now using the other prompts; the ones before are one click away.",
    "task_set_ready": "Task set: {n} classes ({classes}). Every class has examples: tune in "
                      "step 3.",
    "nothing_to_swap": "There are no other prompts to go back to.",
    "estimate_replaced": "The held-out estimate was stopped: a new tuning run began.",
    "workspace_empty": "There is nothing to save yet: set up a task first (step 1).",
    "workspace_not_zip": "{name} is not a workspace file. Choose a .biomed-dpt.zip file saved "
                         "with “Save the workspace”.",
    "workspace_damaged": "{name} is damaged or was not written by this app, so it was not "
                         "opened; nothing was changed. Save the workspace again in the app "
                         "that made it.",
    "workspace_too_big": "{name} is {mb} MB; a workspace file is at most {limit} MB.",
    "workspace_version": "{name} was saved by a newer version of the app (workspace version "
                         "{found}); this app opens version {version}.",
    "workspace_features_again": "The image features were made by another model ({other}); "
                                "they are computed again for {model} as they are needed.",
    "workspace_evaluate_again": "The evaluation was made with another model: press Evaluate "
                                "(step 5) to run it with this one.",
    "workspace_prompts_left_out": "The tuned prompts were left out:",
}

KO: dict[str, str] = {
    "toast_problem": "확인해 주세요",
    "toast_done": "완료",
    "loading": "⏳ 모델을 불러오는 중… ({seconds:.0f}초 경과). 그동안 과제를 설정할 수 있습니다.",
    "still_loading": "모델을 아직 불러오는 중입니다 ({seconds:.0f}초 경과). 잠시 후 다시 시도하세요.",
    "model_failed": "⚠️ **모델을 불러올 수 없습니다.** {problem}",
    "model_failed_actions": "다시 불러오기를 시도하거나 데모 모델로 계속할 수 있습니다. 데모 모델은 "
                            "무작위 가중치라 예측에 의미가 없지만, 작업 흐름의 모든 단계는 실제와 "
                            "같습니다.",
    "not_loaded": "모델이 로드되지 않았습니다. {problem}",
    "model_ready": "모델: `{name}` ({device}).",
    "demo_model": "⚠️ **데모 모델** (`{name}`, 무작위 가중치): 예측에 의미가 없습니다. 작업 흐름을 "
                  "익히는 용도로만 쓰세요.",
    "unexpected": "서버에서 문제가 생겼습니다. 지금까지의 작업은 그대로 있습니다. 다시 시도하세요.",
    "gpu_quota_title": "GPU 시간 소진",
    "gpu_quota_cpu": "이 Space에서 쓸 수 있는 GPU 시간이 지금은 모두 소진되었거나 제때 GPU를 받지 "
                     "못해, 이 단계는 CPU에서 실행됩니다. 더 느리지만 결과는 같습니다. Hugging Face에 "
                     "로그인하면 GPU 시간이 늘어납니다.",
    "gpu_aborted": "이 단계가 받은 GPU 시간을 넘겨 중지되었습니다. 지금까지의 작업은 그대로 있습니다. "
                   "스텝 수나 시간 제한, 스캔 수를 줄여 다시 시도하세요.",
    "stopped_evaluation": "평가가 중지되었습니다. 다시 실행하려면 평가를 누르세요.",
    "unknown_method": "{method} 방법은 이 앱에 없습니다. 다음 중 하나를 쓰세요: {methods}.",
    "unknown_slices": "slices는 \"middle\"(볼륨의 가운데 슬라이스) 또는 \"all\"(슬라이스마다 "
                      "따로 답함)이어야 합니다. {slices}은(는) 쓸 수 없습니다.",
    "choose_support": "지원 세트를 주세요: 클래스마다 폴더 하나에 스캔을 담은 .zip 파일.",
    "support_needs_classes": "지원 세트에는 스캔이 든 클래스 폴더가 두 개 이상 있어야 합니다 "
                             "(폴더 이름이 클래스 이름입니다).",
    "line_too_long": "기다리는 튜닝이 너무 많습니다. 몇 분 뒤에 다시 시도하세요.",
    "session_expired": "{minutes}분 동안 쓰지 않아 이 세션이 예시와 파일과 함께 지워졌습니다. 작업을 "
                       "다시 설정하거나, 저장한 작업 공간을 열어(6단계) 작업을 되살리세요.",
    "task_set": "과제 설정 완료: 클래스 {n}개 ({classes}). 이제 클래스마다 예시를 몇 개씩 추가하세요 "
                "(2단계).",
    "renamed": "{old}의 이름을 {new}(으)로 바꾸었습니다. 예시 {n}개는 그대로 유지됩니다.",
    "class_removed": "클래스 {name}와(과) 그 예시 {n}개를 삭제했습니다.",
    "untuned": "튜닝된 프롬프트는 다른 클래스({classes})용이었습니다. 3단계에서 다시 튜닝하세요.",
    "need_task": "먼저 과제를 설정하세요: 클래스가 두 개 이상 필요합니다 (1단계).",
    "too_many_classes": "클래스 {n}개는 이 앱이 다룰 수 있는 {limit}개를 넘습니다.",
    "task_chosen": "{title}: {description}",
    "samples_added": "예시 영상을 추가했습니다: {counts}. 라이선스가 있는 시험용 영상입니다 "
                     "(assets/examples/SOURCES.md 참고). 3단계에서 튜닝하세요.",
    "sample_suffix": " (예시 영상)",
    "last_predicted_name": "마지막으로 예측한 영상",
    "legend_low": "관련성 낮음",
    "legend_high": "관련성 높음",
    "choose_files": "추가할 영상을 하나 이상 고르세요.",
    "choose_class": "이 예시들이 속한 클래스를 고르세요 ({classes}).",
    "added_examples": "{label} 예시 {n}개를 추가했습니다.",
    "added_example": "{label} 예시 1개를 추가했습니다.",
    "not_added": "추가하지 못한 파일:",
    "duplicate_of": "이미 있는 {other}와(과) 같은 영상이라 건너뛰었습니다.",
    "too_many_examples": "한 세션에는 {kind} 최대 {limit}개까지 둘 수 있습니다.",
    "too_many_slices": "이 슬라이스 {n}개를 더하면 한 세션의 {kind} 한도 {limit}개를 넘습니다. "
                       "남은 자리는 {room}개입니다. 범위를 줄이세요.",
    "slices_repeated": "슬라이스 {total}개 중 {n}개는 다른 예시와 같은 영상이라 한 번만 "
                       "추가했습니다.",
    "pool_added": "모음에 영상 {n}개를 추가했습니다 (미분류 모두 {total}개). **다음에 분류할 영상**을 "
                  "누르면 먼저 분류할 영상을 보여 줍니다.",
    "pool_empty": "모음이 비어 있습니다. 먼저 클래스 없이 영상을 추가하세요.",
    "pool_ranked": "분류하면 가장 많이 배울 영상 {n}개입니다 (미분류 {total}개 중), 가장 유용한 것부터. "
                   "추측을 확인하거나 클래스를 고르세요.",
    "map_empty": "먼저 예시를 추가하세요. 지도는 예시를 보여 줍니다.",
    "map_drawn": "예시 {examples}개, 테스트 영상 {tests}개, 미분류 영상 {pool}개를 영상 특징으로(가장 크게 "
                 "변하는 두 방향) 그렸습니다. 점을 클릭하면 그 영상이 보입니다.",
    "map_with_shown": "별은 4단계에서 예측한 영상입니다. 모든 예시와 멀리 있으면 모델이 그와 비슷한 것을 본 적이 "
                      "없습니다.",
    "map_nothing": "그곳에는 영상이 없습니다. 점을 클릭하세요.",
    "map_gone": "그 영상은 더 이상 없습니다. 지도를 다시 그리세요.",
    "map_is_shown": "4단계에서 예측한 영상입니다.",
    "map_is_example": "{label}의 예시",
    "map_is_test": "{label}의 테스트 영상",
    "map_is_pool": "미분류 (모음에 있음)",
    "map_test": "테스트 영상",
    "map_pool": "미분류 (모음)",
    "map_shown": "4단계의 영상",
    "map_axis": "방향 {k} (영상 특징의 PCA)",
    "pool_alike": "나머지 {n}개는 모델이 보기에 이 중 하나와 거의 같습니다. 이것들을 먼저 분류하세요.",
    "pool_random": "무작위로 고른 영상 {n}개입니다 (미분류 {total}개 중), 순위와 비교해 보세요.",
    "pool_labelled": "{label}에 추가했습니다({name}). 모음에 {left}개 남았습니다. 다시 튜닝하면 "
                     "반영됩니다.",
    "pool_by_tuned": "튜닝된 프롬프트",
    "pool_by_zero": "제로샷",
    "pool_by_probe": "선형 프로브",
    "pool_why_unsure": "불확실: {guess} {p:.0%} 또는 {runner_up} {q:.0%}.",
    "pool_why_disagree": "분류기들이 다릅니다: {who} {guess}, {other} {other_guess}.",
    "pool_why_random": "무작위 선택 (추측: {guess}, {p:.0%}).",
    "unknown_order": "순서 {order}은(는) {orders} 중 하나가 아닙니다.",
    "pool_scan_gone": "그 미분류 영상은 더 이상 모음에 없습니다(분류되었거나 모음을 비웠습니다). "
                      "제안을 다시 받으세요.",
    "range_needs_ends": "범위의 첫 슬라이스와 마지막 슬라이스를 입력하세요 (0 이상).",
    "empty_range": "{first}부터 {last}까지의 범위에는 슬라이스가 없습니다. 첫 슬라이스가 마지막 "
                   "슬라이스보다 뒤에 올 수 없습니다.",
    "range_note": "**예시 추가**를 누르면 고른 파일마다 슬라이스 {first}부터 {last}까지를 모두 "
                  "추가합니다: 파일마다 **예시 {n}개** (다른 슬라이스와 같은 영상은 한 번만).",
    "unreadable": "읽을 수 없습니다 — {detail}",
    "ct_window_on_other": "{window}은(는) CT 창(하운스필드 단위)입니다. 이 파일은 CT가 아니어서 "
                          "파일 자체의 창을 사용했습니다.",
    "selected": "{name}을(를) 선택했습니다. “선택한 예시 삭제”를 누르면 지워집니다.",
    "removed": "{name}을(를) 삭제했습니다.",
    "select_first": "먼저 예시를 클릭하여 선택하세요.",
    "select_in_card": "선택한 예시는 다른 카드에 있습니다. 먼저 {label}의 예시를 클릭한 뒤 이 카드의 "
                      "삭제를 누르세요.",
    "counts_none": "아직 과제가 없습니다.",
    "manual_needs_width": "수동 창에는 중심값(level)과 0보다 큰 폭(width)을 입력하세요.",
    "preview": "{kind}, {rows} × {columns}{frames}. 모델이 보게 될 영상입니다.",
    "preview_frames": ", {label} {index} (0–{last})",
    "preview_volume": ", 볼륨 {volume} (0–{last})",
    "preview_failed": "이 파일은 표시할 수 없습니다 — {detail}",
    "line_wait": "튜닝 차례를 기다리는 중: 대기 {position}번째 (약 {seconds:.0f}초).",
    "reading": "예시 읽는 중: {done}/{total}",
    "step": "스텝 {done}/{total} · 손실 {loss:.3f} (CE {ce:.3f}, L1 {l1:.4f}, KL {kl:.4f}) · "
            "학습 정확도 {accuracy:.0%}",
    "stopping": "현재 스텝이 끝나면 멈춥니다…",
    "stopped_early_kept": "**첫 스텝 전에 중지됨**: 학습된 것이 없어 이전 프롬프트를 그대로 "
                          "유지합니다.",
    "stopped_early_none": "**첫 스텝 전에 중지됨**: 학습된 것이 없고, 튜닝된 프롬프트도 아직 "
                          "없습니다.",
    "summary": "**튜닝 {how}**: {steps} 스텝, {seconds:.1f}초 ({precision}). 학습 정확도 "
               "{accuracy:.0%}, 손실 {loss:.3f}. 클래스: {classes}. 4단계에서 예측하세요.",
    "how_finished": "완료",
    "encoding": "예시의 특징 준비 중: {done}/{total}",
    "features_ready": "모든 예시의 특징이 준비되었습니다. 이제 튜닝은 텍스트 스텝만 계산합니다.",
    "features_stopped": "특징 준비가 중단되었습니다. 튜닝할 때 마저 준비합니다.",
    "how_converged": "완료 (손실이 수렴함)",
    "paying_tuned": "튜닝된 프롬프트 (보류 추정 ± 편차)",
    "paying_baseline": "각 실행의 가장 좋은 기준선",
    "paying_examples": "예시 수",
    "paying_accuracy": "보류 정확도",
    "warm_started": "이전에 튜닝한 프롬프트에서 이어서 튜닝했습니다(클래스가 같음). 처음부터 하려면 "
                    "*템플릿 단어에서 다시 시작*을 체크하세요.",
    "train_accuracy_note": "이 정확도는 프롬프트를 튜닝한 예시에서 잰 것으로, 새 영상에서의 성능을 "
                           "뜻하지 않습니다. 아래의 교차 검증 결과를 보세요.",
    "estimating": "보지 않은 예시로 정확도 추정 중 ({folds}겹 교차 검증): 방법 {done}/{total}",
    "estimate_title": "**교차 검증 추정치** (예시 {n}개로 {folds}겹 교차 검증: 각 예시를 그 예시를 "
                      "보지 않은 모델로 예측{recipe})",
    "estimate_fast": "; 튜닝 열은 빠른 레시피로 다시 튜닝",
    "estimate_head": "| 방법 | 정확도 | 균형 정확도 | 편차 (겹별 ± 표준편차) |",
    "estimate_row": "| {method} | {accuracy:.0%} | {balanced:.0%} | ± {std:.0%} |",
    "estimate_stopped": "교차 검증 추정을 중지했습니다.",
    "too_few_to_estimate": "⚠️ 교차 검증 추정 없음: 클래스마다 예시가 두 개 이상 필요합니다.",
    "few_per_class": "⚠️ 예시가 {n}개뿐인 클래스가 있습니다. 클래스당 4개 미만이면 추정치가 "
                     "거칩니다.",
    "unbalanced": "⚠️ 클래스 크기가 3배 넘게 다릅니다 ({most}개 대 {least}개). 균형 정확도를 "
                  "보세요.",
    "spread_wide": "⚠️ 겹별 편차(± {spread:.0%})가 튜닝된 프롬프트와 가장 좋은 기준선의 차이"
                   "({gap:.0%})보다 큽니다. 이 예시들로는 둘을 구별할 수 없습니다.",
    "method_tuned": "튜닝된 프롬프트 (Biomed-DPT)",
    "method_zero-shot": "제로샷",
    "method_tip-adapter": "Tip-Adapter (학습 없음)",
    "method_linear-probe": "선형 프로브",
    "nearest_caption": "{similarity:.2f} · {name}",
    "how_user": "사용자가 중지",
    "how_budget": "시간 제한으로 중지",
    "need_examples": "{classes}에 예시를 하나 이상 추가하세요 (2단계).",
    "curve_loss": "손실",
    "curve_accuracy": "학습 정확도 (스텝별 배치)",
    "curve_final": "튜닝 후, 전체 예시: {accuracy:.0%}",
    "curve_step": "스텝",
    "curve_empty": "튜닝하는 동안 여기에 곡선이 그려집니다.",
    "choose_scan": "분류할 영상을 고르세요.",
    "zero_shot_only": "아직 튜닝된 프롬프트가 없어 제로샷 분류기를 보여 줍니다. 3단계에서 "
                      "튜닝하세요.",
    "looks_like": "이 파일은 {found} 영상으로 보이지만 과제는 {task}입니다.",
    "colour_in_grey": "이 영상은 컬러이지만 {task} 영상은 흑백입니다. 이 과제의 영상이 아닐 수 있으며, "
                      "그렇다면 예측은 의미가 없습니다.",
    "grey_in_colour": "이 영상은 흑백이지만 {task} 영상은 컬러입니다. 이 과제의 영상이 아닐 수 있으며, "
                      "그렇다면 예측은 의미가 없습니다.",
    "predict_first": "먼저 영상을 예측하세요.",
    "not_a_class": "{name}은(는) 예측된 클래스가 아닙니다.",
    "predicted": "가장 높은 클래스: {top} ({p:.1%}).",
    "volume_predicted": "{total}개 {label} 중 {n}개를 하나씩 {which}(으)로 분류했습니다{every}. "
                        "모델은 {label} {best}에서 가장 확신합니다: {top} ({p:.0%}). 아래에 그 "
                        "지도와 함께 보입니다. 다른 {label}(으)로 옮기면 그 지도가 보입니다.",
    "volume_every": " ({most}개가 넘는 볼륨이라 {label} {step}개마다 하나씩)",
    "volume_with_tuned": "튜닝된 프롬프트",
    "volume_with_zero": "제로샷 템플릿(아직 튜닝된 프롬프트 없음)",
    "volume_progress": "{label} 분류 중: {done}/{total}",
    "volume_single": "이 영상은 한 장이라 한 영상으로 예측했습니다.",
    "volume_slice_shown": "보이는 {label}: {index} (0–{last} 중, 가장 확신: {best}).",
    "volume_shown": "보이는 {label}: {index}",
    "volume_best": "가장 확신하는 {label}: {index}",
    "volume_probability": "확률",
    "slice_word": "슬라이스",
    "frame_word": "프레임",
    "choose_test": "클래스 폴더를 담은 zip을 고르거나, 영상과 그 클래스를 고르세요.",
    "choose_test_class": "이 영상들의 클래스를 고르세요 ({classes}).",
    "added_tests": "평가 영상 {n}개를 추가했습니다.",
    "added_test": "평가 영상 1개를 추가했습니다.",
    "tests_not_added": "추가하지 못한 것:",
    "zip_folder": "폴더 {folder}은(는) 클래스가 아닙니다. 각 영상을 클래스 이름의 폴더에 넣으세요.",
    "need_tests": "먼저 라벨이 있는 평가 영상을 추가하세요 (클래스 폴더 zip, 또는 클래스를 지정한 "
                  "파일).",
    "evaluated": "평가 영상 {n}개. 정확도 {accuracy:.1%}, 균형 정확도 {balanced:.1%} ({which}).",
    "which_tuned": "튜닝된 프롬프트",
    "which_zero": "제로샷: 아직 튜닝된 프롬프트 없음",
    "overlap": "⚠️ 평가 영상 중 {n}개는 학습 예시이기도 합니다. 튜닝 결과가 실제보다 좋게 나옵니다. "
               "튜닝에 쓰지 않은 영상으로 평가하세요.",
    "col_metric": "지표",
    "fraction_true": "실제 클래스 중 비율",
    "col_zero": "제로샷",
    "col_tuned": "튜닝",
    "col_tip-adapter": "Tip-Adapter",
    "col_linear-probe": "선형 프로브",
    "m_accuracy": "정확도",
    "m_balanced": "균형 정확도",
    "m_macro_f1": "매크로 F1",
    "m_precision": "정밀도: {name}",
    "m_recall": "재현율: {name}",
    "m_f1": "F1: {name}",
    "confusion_title": "{which}: 정확도 {accuracy:.1%}",
    "cell_choice": "실제 {true} → 예측 {predicted} ({n})",
    "cell_shown": "{predicted}(으)로 예측된 {true} 평가 영상 {n}개 ({which}), 각각 {predicted}의 "
                  "지도와 함께. 클릭하여 선택하세요.",
    "cell_selected": "{true} 영상을 선택했습니다. “예시에 추가”를 누르면 학습에 쓰입니다.",
    "cell_promoted": "{name}(으)로 예시에 추가했고, 더는 평가 영상이 아니므로 이 칸에는 이제 {n}개가 "
                     "있습니다(행렬을 갱신하려면 다시 평가하세요). 3단계에서 다시 튜닝하세요.",
    "cell_select_first": "먼저 영상을 클릭하여 선택하세요.",
    "evaluate_first": "먼저 평가한 뒤 혼동 행렬의 칸을 고르세요.",
    "predicted_class": "예측 클래스",
    "true_class": "실제 클래스",
    "choose_prompts": "이 앱에서 저장한 .safetensors 프롬프트 파일을 고르세요.",
    "choose_workspace": "이 앱에서 저장한 작업 공간 파일(.biomed-dpt.zip)을 고르세요.",
    "choose_lesson": "수업 가운데 하나를 고르세요: {lessons}.",
    "work_deleted": "이 서버에 있던 내 작업을 삭제했습니다: 영상, 특징, 프롬프트, 평가, 그리고 "
                    "올린 파일과 내려받을 파일 (최근 {seconds}초 안에 올린 파일은 {seconds}초 "
                    "안에 삭제됩니다). 1단계부터 다시 시작하세요.",
    "workspace_wait_for_run": "튜닝이나 평가가 진행 중입니다. 중지(3단계)를 누르거나 끝날 때까지 "
                              "기다린 뒤 작업 공간을 다시 여세요.",
    "lesson_opened": "수업 {lesson}: 이 사본은 내 것입니다. 여기서 바꾸는 것은 다른 사람의 작업을 "
                     "바꾸지 않습니다.",
    "workspace_saved": "작업 공간을 {name}(으)로 저장했습니다 ({held}). 나중에 여기서, 다른 "
                       "브라우저나 다른 컴퓨터에서 여세요.",
    "ws_task": "과제",
    "ws_examples": "예시 {n}개",
    "ws_tests": "테스트 영상 {n}개",
    "ws_prompts": "튜닝된 프롬프트",
    "ws_evaluation": "평가",
    "workspace_opened": "작업 공간을 열었습니다: 예시 {examples}개, 테스트 영상 {tests}개, "
                        "{prompts}.",
    "workspace_with_prompts": "튜닝된 프롬프트 포함",
    "workspace_without_prompts": "튜닝된 프롬프트 없음",
    "workspace_before_kept": "열기 전의 작업은 {name}(으)로 저장했습니다(위). 그 파일을 열면 "
                             "그 작업으로 돌아갑니다.",
    "work_open_elsewhere": "내 작업이 이 브라우저의 다른 탭에 열려 있습니다. 이 탭에는 새 빈 작업 "
                           "공간이 따로 있습니다. 그 작업을 여기서 이어 하려면 이어받으세요(그러면 "
                           "다른 탭은 그 작업을 더 이상 바꾸지 않습니다).",
    "work_taken_over": "내 작업이 이제 이 브라우저의 다른 탭에 열려 있어서 이 단계는 여기서 하지 "
                       "않았습니다(그 탭에 보이는 작업을 바꾸게 되므로). 그 탭에서 계속하거나, "
                       "이 페이지를 새로 고친 뒤 작업을 다시 이어받으세요.",
    "work_taken": "다른 탭의 작업을 이제 여기서 합니다. 그 탭의 단계는 이제부터 거절됩니다.",
    "work_taken_before": "이 탭에 있던 작업은 {name}(으)로 저장했습니다. 6단계에서 내려받을 수 "
                         "있습니다(그 파일을 열면 그 작업으로 돌아갑니다).",
    "work_gone": "그 작업은 이 서버에 더 이상 없습니다(삭제되었거나, 쓰지 않아 지워졌습니다). "
                 "저장한 작업 공간을 열어(6단계) 이어 하세요.",
    "work_cleared_idle": "이전 작업은 {minutes}분 동안 쓰지 않아, 위 안내대로 그 파일과 함께 "
                         "지워졌습니다. 저장한 작업 공간을 열어(6단계) 이어 하세요.",
    "loaded": "{classes}의 프롬프트를 불러왔습니다 ({modality}). 4단계에서 예측하세요.",
    "tune_first": "저장할 튜닝된 프롬프트가 아직 없습니다. 3단계에서 튜닝하거나 아래에서 프롬프트 "
                  "파일을 불러오세요.",
    "w_auto": "파일 자체 창 / 자동",
    "w_manual": "수동 중심값·폭",
    "w_brain": "CT 뇌", "w_subdural": "CT 경막하", "w_stroke": "CT 뇌졸중",
    "w_lung": "CT 폐", "w_mediastinum": "CT 종격동", "w_soft tissue": "CT 연부조직",
    "w_liver": "CT 간", "w_bone": "CT 뼈",
    "report_title": "Biomed-DPT 스튜디오 보고서",
    "report_model": "모델: {name}",
    "report_demo": "무작위 가중치의 데모 모델: 이 예측에는 의미가 없습니다.",
    "report_task": "과제: {modality}{organ}; 클래스: {classes}",
    "report_template": "템플릿: “{template}”",
    "report_view": "창: {window}; {slice}",
    "report_window_manual": "중심값 {level}, 폭 {width}",
    "report_slice": "프레임/슬라이스 {index} (0–{last})",
    "report_single": "단일 영상",
    "report_scan": "영상 (모델이 본 모습)",
    "report_map": "주의 지도: {name}",
    "report_probs": "클래스 확률",
    "report_tuned": "튜닝된 프롬프트",
    "report_zero": "제로샷",
    "report_probability": "확률",
    "report_disclaimer": "연구 및 교육용입니다. 의료기기가 아니며 진단이나 치료에 쓰면 안 됩니다.",
    "report_made": "작성 {when}",
    "unlike_examples": "이 영상은 어떤 예시와도 닮지 않았습니다. 가장 가까운 예시와의 유사도"
                       "({similarity:.2f})가, 각 예시가 가장 가까운 다른 예시와 갖는 유사도의 "
                       "최솟값({floor:.2f})보다도 낮으므로 이 확률은 큰 의미가 없습니다.",
    "predict_no_examples": "선형 프로브와 가장 가까운 예시를 보려면 모든 클래스에 예시가 "
                           "있어야 합니다. 2단계에서 추가하세요.",
    "predict_no_probe": "선형 프로브에는 모든 클래스의 예시가 필요합니다. 2단계에서 {classes}에 "
                        "예시를 추가하세요.",
    "toast_wait": "잠시 기다려 주세요",
    "tuning_going": "튜닝이 진행 중입니다. 끝날 때까지 기다리거나 먼저 중지를 누르세요.",
    "nothing_running": "실행 중인 작업이 없어 중지할 것이 없습니다.",
    "stopped_offered": "**사용자가 {steps} 스텝 후 중지함.** 튜닝된 프롬프트({kept} 스텝)는 그대로 "
                       "유지됩니다. 중지한 실행의 프롬프트는 아래 버튼으로 쓸 수 있습니다.",
    "swap_previous": "이전 프롬프트로 되돌리기 ({what})",
    "swap_stopped": "중지한 실행의 프롬프트 사용 ({what})",
    "swap_replaced": "두고 온 프롬프트로 돌아가기 ({what})",
    "n_steps": "{steps} 스텝",
    "from_file": "파일에서 불러옴",
    "from_file_tuned": "지금 쓰는 프롬프트는 파일(6단계)에서 불러왔습니다. 보여 줄 곡선이 없습니다.",
    "swapped": "다른 프롬프트를 사용합니다. 이전 프롬프트는 버튼 한 번으로 되돌릴 수 있습니다.",
    "task_set_ready": "과제 설정 완료: 클래스 {n}개 ({classes}). 모든 클래스에 예시가 있습니다. "
                      "3단계에서 튜닝하세요.",
    "nothing_to_swap": "되돌아갈 다른 프롬프트가 없습니다.",
    "estimate_replaced": "새 튜닝이 시작되어 교차 검증 추정을 중지했습니다.",
    "workspace_empty": "아직 저장할 것이 없습니다. 먼저 과제를 설정하세요 (1단계).",
    "workspace_not_zip": "{name}은(는) 작업 공간 파일이 아닙니다. “작업 공간 저장”으로 저장한 "
                         ".biomed-dpt.zip 파일을 고르세요.",
    "workspace_damaged": "{name}이(가) 손상되었거나 이 앱에서 만든 파일이 아니어서 열지 "
                         "않았습니다. 바뀐 것은 없습니다. 파일을 만든 앱에서 작업 공간을 다시 "
                         "저장하세요.",
    "workspace_too_big": "{name}은(는) {mb} MB입니다. 작업 공간 파일은 {limit} MB까지입니다.",
    "workspace_version": "{name}은(는) 더 새로운 버전의 앱에서 저장되었습니다 (작업 공간 버전 "
                         "{found}). 이 앱은 버전 {version}을(를) 엽니다.",
    "workspace_features_again": "영상 특징은 다른 모델({other})에서 만들어졌습니다. 필요할 때 "
                                "{model}로 다시 계산합니다.",
    "workspace_evaluate_again": "평가는 다른 모델로 한 것입니다. 이 모델로 하려면 평가(5단계)를 "
                                "누르세요.",
    "workspace_prompts_left_out": "튜닝된 프롬프트는 열지 않았습니다:",
}

CATALOGS = {"en": EN, "ko": KO}
ENGLISH_WORD = __import__("re").compile(r"[A-Za-z]{3,}")  # for checking Korean text

# The core's messages in Korean, by the key the core's error carries (`StudioError.key`) and
# filled with its values; a core error without a Korean text here stays English behind a
# Korean lead.
CORE_KO: dict[str, str] = {
    "scan_not_an_image":
        "이 앱이 읽을 수 있는 의료 영상 파일이 아닙니다. DICOM(.dcm, 확장자 없어도 됨), PNG, JPEG, "
        "TIFF, BMP, NIfTI(.nii, .nii.gz), Analyze(.hdr과 .img), MGH(.mgh, .mgz), "
        "MetaImage(.mha), NRRD(.nrrd), 또는 DICOM 시리즈 하나를 담은 zip을 올리세요.",
    "scan_pair_header":
        "Analyze 또는 NIfTI 영상 쌍의 헤더(.hdr)입니다. 복셀은 같은 이름의 .img 파일에 있습니다. "
        "두 파일을 함께 고르거나, 둘을 담은 zip을 올리세요.",
    "scan_cifti":
        "CIFTI 파일입니다: 뇌 표면과 영역에 걸친 값의 행렬(연결성 또는 시계열)이지 이 앱이 분류할 "
        "수 있는 영상이 아닙니다. 그것을 만든 볼륨(NIfTI)을 올리세요.",
    "scan_tracks":
        "트랙토그래피 파일(신경섬유 경로)이지 이 앱이 분류할 수 있는 영상이 아닙니다. 경로를 만든 "
        "영상(NIfTI 또는 DICOM)을 올리세요.",
    "scan_surface":
        "GIFTI 표면(뇌 표면의 메시)이지 이 앱이 분류할 수 있는 영상이 아닙니다. 그것을 만든 영상"
        "(NIfTI 또는 DICOM)을 올리세요.",
    "scan_damaged":
        "이 파일을 읽을 수 없습니다: 손상되었거나 불완전해 보입니다(예: 내보내기나 업로드 중 잘림). "
        "원래 시스템에서 다시 내보내 새 사본을 올리세요.",
    "scan_too_big":
        "이 영상은 여기서 쓸 수 있는 메모리보다 큽니다. 슬라이스 수를 줄이거나 축소한 사본을 올리세요.",
    "scan_one_volume": "이 파일에는 볼륨이 하나뿐입니다. 볼륨 {volume}은(는) 없습니다. 볼륨 0을 고르세요.",
    "scan_no_volume": "이 파일의 볼륨은 0부터 {last}까지입니다. 볼륨 {volume}은(는) 없습니다.",
    "scan_no_frame": "{label} {index}은(는) 없습니다: 이 영상은 {n}개입니다 (0부터 {last}까지).",
    "task_two_classes": "과제에는 클래스가 두 개 이상 필요합니다. 구별할 클래스를 추가하세요.",
    "task_class_twice": "클래스 이름 {name}이(가) 두 번 나옵니다. 클래스마다 다른 이름을 주세요.",
    "template_one_slot":
        "템플릿 {template}에는 클래스 이름이 들어갈 '{{}}'가 정확히 하나 있어야 합니다.",
    "prompt_file_unreadable":
        "프롬프트 파일 {name}을(를) 읽을 수 없습니다. 이 앱에서 저장한 .safetensors 파일을 다시 "
        "고르세요.",
    "prompt_file_too_big":
        "{name}은(는) {mb} MB입니다. 프롬프트 파일은 몇 킬로바이트입니다. 이 앱에서 저장한 "
        ".safetensors 파일을 고르세요.",
    "prompt_file_not_safetensors":
        "{name}은(는) 이 앱에서 저장한 프롬프트 파일이 아닙니다(.safetensors 파일이어야 합니다).",
    "prompt_file_foreign": "{name}은(는) safetensors 파일이지만 이 앱에서 저장한 프롬프트 파일이 "
                           "아닙니다.",
    "prompt_file_version":
        "{name}의 프롬프트 파일 버전은 {found}입니다. 이 앱은 버전 {version}을(를) 읽습니다.",
    "prompt_file_incomplete": "{name}에 {keys} 항목이 없습니다. 불완전한 프롬프트 파일입니다.",
    "prompt_file_tensors":
        "{name}에는 텐서 {tensors}가 있습니다. 프롬프트 파일에는 'ctx' 하나만 있어야 합니다.",
    "prompt_file_damaged_ctx": "{name}의 컨텍스트 텐서가 손상되었습니다.",
    "prompts_other_model":
        "이 프롬프트는 다른 모델({other})에서 만들어졌고, 불러온 모델은 {model}입니다. 이 "
        "프롬프트를 쓰려면 그 모델로 앱을 시작하세요.",
    "prompt_file_settings": "프롬프트 파일의 설정이 올바르지 않습니다: {detail}",
    "prompt_file_shape":
        "프롬프트 파일의 컨텍스트 모양은 {found}이고, 이 모델과 템플릿에는 {need}이(가) 필요합니다.",
    "prompts_patch_placement":
        "이 프롬프트는 비전 프롬프트를 첫 이미지 패치 자리에 두고(공개 코드의 배치) 튜닝되었습니다. "
        "이 앱은 비전 프롬프트를 끼워 넣습니다. 여기서 프롬프트를 다시 튜닝하세요.",
}
FRAME_LABELS_KO = {"slice": "슬라이스", "frame": "프레임"}


def core_text(lang: str, error: BaseException) -> str:
    """A core error's message in `lang`: the translation of its key where there is one, else
    its English message as it is."""
    message = str(error)
    korean = CORE_KO.get(getattr(error, "key", None) or "") if lang == "ko" else None
    return _core_korean(korean, dict(getattr(error, "values", None) or {})) if korean else message


def _core_korean(korean: str, values: dict) -> str:
    if "label" in values:
        values["label"] = FRAME_LABELS_KO.get(values["label"], values["label"])
    if values.get("detail_key") in CORE_KO:  # a core message quoted inside another
        values["detail"] = _core_korean(CORE_KO[values["detail_key"]],
                                        dict(values.get("detail_values") or {}))
    return korean.format(**values)


class UserError(StudioError):
    """A problem the user can fix, as a message key and its values (shown in their language)."""

    def __init__(self, key: str, **values: Any) -> None:
        super().__init__(text("en", key, **values), key=key, **values)

    def text(self, lang: str) -> str:
        return text(lang, self.key, **self.values)


def text(lang: str, key: str, **values: Any) -> str:
    """The message `key` in `lang` (English when the language or key is missing there)."""
    catalog = CATALOGS.get(lang, EN)
    template = catalog.get(key) or EN[key]
    return template.format(**values) if values else template


def language(request: Any) -> str:
    """'ko' when the browser's first preferred language is Korean, else 'en'. Reads the
    request's Accept-Language header (gr.Request, or None for direct calls)."""
    headers = getattr(request, "headers", None)
    if headers is None:
        return "en"
    try:
        accepted = headers.get("accept-language") or ""
    except AttributeError:
        return "en"
    first = accepted.split(",")[0].strip().lower()
    return "ko" if first.startswith("ko") else "en"


def modality_name(lang: str, modality_id: str | None) -> str:
    """A modality as the page names it: its id in English, its Korean name (from
    assets/modalities.json) in Korean."""
    if not modality_id:
        return ""
    if lang != "ko":
        return modality_id
    from core import presets

    known = {m.id: m.name_ko for m in presets.load_modalities()}
    return known.get(modality_id, modality_id)


def task_title(lang: str, task) -> str:
    """A ready task's (or sample set's) title in `lang` (both are kept in assets/)."""
    return task.title_ko if lang == "ko" else task.title


def window_label(lang: str, value: str) -> str:
    return text(lang, f"w_{value}") if f"w_{value}" in EN else value
