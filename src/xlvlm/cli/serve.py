"""``xlvlm serve``: browse a run folder and play with the model in a local web page."""

from __future__ import annotations

import argparse
from pathlib import Path

from xlvlm.cli import options
from xlvlm.cli import validate as valid
from xlvlm.errors import XlvlmError


def port(text) -> int:
    value = valid.index(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port between 1 and 65535, not {value}")
    return value


def register(sub) -> None:
    p = sub.add_parser("serve", help="browse a run folder (concepts, shift, sweeps, predictions) and answer and "
                                     "steer with the model in a local web page")
    p.add_argument("run_dir", help="run folder (e.g. the --out of `xlvlm demo`)")
    options.add_model(p, help=options.MODEL_HELP + "; without it the page only browses")
    options.add_device(p)
    p.add_argument("--image-root", type=valid.path, action="append", default=[], metavar="DIR",
                   help="a folder (besides RUN_DIR) whose images the page may show, e.g. the dataset the run's "
                        "samples come from; repeat for several (the run's own files cannot add any)")
    p.add_argument("--port", type=port, default=8000, help="TCP port (default 8000)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; anything else lets other "
                        "machines read the run folder and use the model)")
    p.set_defaults(func=run)


def run(args) -> None:
    from xlvlm.serve.app import LOOPBACK, listen_socket, serve
    from xlvlm.serve.runfolder import RunFolder

    RunFolder(args.run_dir).results  # a missing folder or a bad result is refused before the (slow) model load
    missing = next((root for root in args.image_root if not Path(root).is_dir()), None)
    if missing is not None:
        raise XlvlmError(f"--image-root {missing}: not a folder")
    sock = listen_socket(args.host, args.port)  # a port in use, too
    playground = None
    try:
        if args.model:
            from xlvlm.serve.play import Playground

            playground = Playground(args.run_dir, options.load_model(args), image_roots=args.image_root,
                                    model_name=args.model)
        if args.host not in LOOPBACK:
            options.warn(f"listening on {args.host}: other machines can reach this server")
        print(f"xlvlm serve: http://{args.host}:{args.port}/ (Ctrl+C stops it)", flush=True)
        serve(args.run_dir, playground, args.image_root, host=args.host, port=args.port, sock=sock)
    finally:
        sock.close()
        if playground is not None:
            playground.close()
