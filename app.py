"""Biomed-DPT Studio: `python app.py` opens the clinician app in a browser (`--help` for flags)."""
import logging

try:  # on a ZeroGPU Space, `spaces` must be imported before torch
    import spaces  # noqa: F401
except ImportError:
    pass

from demo.runtime import storage  # noqa: E402

storage.start()  # the private folder for uploads and downloads, before gradio reads it

from demo.ui.layout import create_app, launch_options  # noqa: E402

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
demo, args = create_app()

if __name__ == "__main__":
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **launch_options(args.mcp))
