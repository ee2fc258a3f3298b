"""GDCM decoding in a child Python process, for `core.imaging.dicom`.

python-gdcm is the one permissively licensed decoder here for JPEG Lossless (process 14), the
compression many archives export CT and radiographs with. On some corrupt JPEG streams it throws
a C++ exception that ends the whole process (std::terminate): one damaged upload would take the
app down with it. So GDCM never runs inside the app: each file is decoded by a fresh interpreter
(`python -m core.imaging.gdcm IN TRANSFER_SYNTAX OUT.npy`), and a crash costs only that file.
The price is about half a second per file, paid only for syntaxes no in-process plugin reads.
"""
from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

DECODE_TIMEOUT_S = 300
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def decode_with_gdcm(path: Path, transfer_syntax: str) -> np.ndarray:
    """All frames of the DICOM file at `path`, decoded by GDCM in a child process; YCbCr comes
    back as RGB. Raises RuntimeError when the child fails, crashes or hangs."""
    with tempfile.TemporaryDirectory(prefix="scan-gdcm-") as folder:
        out = Path(folder) / "pixels.npy"
        command = [sys.executable, "-m", "core.imaging.gdcm", str(Path(path).resolve()),
                   transfer_syntax, str(out)]
        try:
            # stderr is dropped, not logged: a decoder's complaint could quote the file.
            done = subprocess.run(command, cwd=_PROJECT_ROOT, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  timeout=DECODE_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"GDCM took longer than {DECODE_TIMEOUT_S} s") from None
        if done.returncode != 0 or not out.is_file():
            logger.info("GDCM child process failed with exit status %s", done.returncode)
            raise RuntimeError("GDCM could not decode the pixel data")
        return np.load(out, allow_pickle=False)


def _decode_here(path: str, transfer_syntax: str, out: str) -> None:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.pixels import as_pixel_options, get_decoder
    from pydicom.uid import UID

    ds = pydicom.dcmread(path, force=True)
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)  # as the parent settled it
    decoder = get_decoder(UID(transfer_syntax))
    pixels, _ = decoder.as_array(ds, decoding_plugin="gdcm", **as_pixel_options(ds))
    np.save(out, pixels, allow_pickle=False)


if __name__ == "__main__":
    _decode_here(*sys.argv[1:4])
