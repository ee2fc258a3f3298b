"""The app's look: a theme whose text meets WCAG AA contrast (4.5:1) in light and dark mode,
and the page's CSS (a compact masthead, steps that wrap on a phone, headings that never cover
what they name).

Contrast ratios, light mode: hints, "- or -" and the footer in gray-600 #4b5563 on white and on
the gray-50 page, 7.6 and 7.2; block headings in indigo-700 #4338ca on indigo-100 #e0e7ff, 6.4;
white on indigo-600 #4f46e5 (primary buttons, the chosen radio) and indigo-600 upload prompts and
links on white, 6.3; placeholders in gray-500 #6b7280 on white, 4.8. Dark mode: block headings
white on indigo-700, 7.9; links in indigo-300 #a5b4fc on gray-800, 7.4; hints in gray-400 on
gray-800, 5.8.
"""
from __future__ import annotations

import gradio as gr

# Soft's footer, hint and placeholder grey (gray-400) is at 2.5:1 on white; its headings,
# buttons and upload prompts in indigo-500 at 3.6 to 4.5:1.
_LIGHT = dict(
    body_text_color_subdued="*neutral_600",
    block_info_text_color="*neutral_600",
    input_placeholder_color="*neutral_500",
    block_label_text_color="*primary_700",
    block_title_text_color="*primary_700",
    color_accent="*primary_600",
    button_primary_background_fill="*primary_600",
    button_primary_background_fill_hover="*primary_700",
    button_primary_border_color="*primary_600",
    button_primary_border_color_hover="*primary_700",
    checkbox_label_background_fill_selected="*primary_600",
    link_text_color="*secondary_600",
    link_text_color_hover="*secondary_700",
    link_text_color_visited="*secondary_700",
    link_text_color_active="*secondary_700",
)
_DARK = dict(
    body_text_color_subdued_dark="*neutral_400",
    block_info_text_color_dark="*neutral_400",
    input_placeholder_color_dark="*neutral_400",
    block_label_background_fill_dark="*primary_700",
    block_title_text_color_dark="white",
    button_primary_background_fill_dark="*primary_600",
    button_primary_background_fill_hover_dark="*primary_700",
    checkbox_label_background_fill_selected_dark="*primary_600",
    link_text_color_dark="*secondary_300",
    link_text_color_hover_dark="*secondary_200",
    link_text_color_visited_dark="*secondary_300",
    link_text_color_active_dark="*secondary_300",
)


def theme() -> gr.themes.Base:
    """Gradio's Soft theme (indigo on gray) with every text colour at AA contrast or better."""
    return gr.themes.Soft(primary_hue="indigo", secondary_hue="indigo",
                          neutral_hue="gray").set(**_LIGHT, **_DARK)


# The masthead ends in the top third of a 720-pixel-high laptop screen, so that a step's result
# is near the fold; the disclaimer and the privacy promise stay in full view, in smaller type.
_MASTHEAD = """
#masthead {gap: 4px;}
#masthead h1 {font-size: 1.6rem; margin: 0; line-height: 1.25;}
#masthead .prose p {margin: 0;}
#masthead .prose.privacy p {font-size: 13px; line-height: 1.45;}
#masthead .prose.disclaimer p, #masthead .prose.intro p, #model-status p {font-size: 14px;}
.block.disclaimer {border-left: 4px solid #c33; padding-left: 10px;}
.block.privacy {border-left: 4px solid #37a; padding-left: 10px;}
#work-notice [data-testid="markdown"]:has(p) {border-left: 4px solid #b45309; padding-left: 10px;}
#take-over {width: fit-content; min-width: 0; align-self: start; justify-self: start;}
#delete-my-work {width: fit-content; min-width: 0; align-self: start; justify-self: start;
                 margin-left: 14px;}
@media (min-width: 900px) {
  #masthead {display: grid; grid-template-columns: max-content 1fr; column-gap: 28px;
             align-items: center;}
  #masthead > .block:not(:first-child):not(.intro) {grid-column: 1 / -1;}
  #masthead > #delete-my-work {grid-column: 1; margin-left: 0;}  /* beside the model's status */
  #masthead > #model-status {grid-column: 2;}
}
"""
# A probability table's or a gallery's heading sits above its content instead of floating over
# it: a long heading in a narrow column (a phone, three tables side by side) wraps onto a
# second line, which would otherwise cover the top class or the first row of pictures. A
# gallery's toolbar moves up into its heading's row, beside the heading, off the pictures.
_HEADING = 'label[data-testid="block-label"]:not(.sr-only)'
_LABEL = f'.block[data-testid="label"] > {_HEADING}'
_GALLERY = f".block:has(> .gallery-container):has(> {_HEADING})"
_HEADINGS = f"""
{_LABEL}, {_GALLERY} > label {{
  position: static; margin: 0 0 6px 0; max-width: 100%; width: fit-content;
}}
{_LABEL} > span, {_GALLERY} > label > span {{flex-shrink: 0;}}
{_GALLERY} {{position: relative; height: auto !important;}}
{_GALLERY} > label {{max-width: calc(100% - 40px);}}
{_GALLERY} > .gallery-container, {_GALLERY} .grid-wrap {{position: static;}}
{_GALLERY} .icon-button-wrapper.top-panel {{top: 6px; right: 6px;}}
#volume-plot > {_HEADING}, #training-curve > {_HEADING}, #paying-plot > {_HEADING} {{
  position: static; margin: 0 0 6px 0; width: fit-content;
}}
"""
_CARDS = """
#class-table td, #class-table th {white-space: pre-wrap !important; vertical-align: top;}
.card-gallery .thumbnail-item, .card-gallery button {max-width: 140px; max-height: 140px;}
.class-card {border: 1px solid #d5d9e6; border-radius: 8px; padding: 6px 10px; margin-top: 8px;}
/* a volume's strip of slices is as tall as its thumbnails (no empty gallery space below) */
#example-strip .grid-wrap, #predict-strip .grid-wrap {min-height: 0; height: auto;}
.strip .thumbnail-item, .strip button {max-width: 100px; max-height: 100px;}
/* the suggestions to label: cards side by side, wrapping on a phone */
.pool-cards {flex-wrap: wrap; gap: 10px;}
.pool-card {flex: 0 1 200px !important; border: 1px solid #d5d9e6; border-radius: 8px;
            padding: 6px;}
.pool-why p {font-size: var(--text-sm); margin: 0;}
"""
# A toast's heading is Gradio's own word for its kind ("Warning", "Info"), in English whatever
# title the server gives; the page tells its language (HEAD), and Korean pages show Korean.
_TOASTS = """
:lang(ko) .toast-title.warning, :lang(ko) .toast-title.info {font-size: 0;}
:lang(ko) .toast-title.warning::before {content: "확인해 주세요"; font-size: var(--text-md);}
:lang(ko) .toast-title.info::before {content: "알림"; font-size: var(--text-md);}
:lang(ko) .toast-title .toast-count {font-size: var(--text-md); margin-left: 0.3em;}
"""
# A number typed into a slider's box counts once the box loses focus; Enter counts too.
HEAD = """<script>
document.documentElement.lang = navigator.language || 'en';
document.addEventListener('keydown', (event) => {
  const box = event.target;
  if (event.key === 'Enter' && box.matches('input[type=number][aria-label^="number input for"]')) {
    box.blur();
  }
});
</script>"""

# The training curve: its heading above the figure, which fills a phone's width.
_PLOTS = """
#training-curve > label[data-testid="block-label"]:not(.sr-only) {
  position: static; margin: 0 0 6px 0; width: fit-content;
}
"""

CSS = _MASTHEAD + _HEADINGS + _PLOTS + _CARDS + _TOASTS
