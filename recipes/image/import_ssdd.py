"""Convert an official SSDD checkpoint into a difftok ``save_pretrained`` folder.

    python -m recipes.image.import_ssdd weights=PATH/model_ae_ema.safetensors out=DIR
    python -m recipes.image.import_ssdd weights=PATH out=DIR encoder=f8c4 decoder=m steps=1

``encoder`` (``f8c4`` | ``f16c4``) and ``decoder`` (``s`` ... ``h``) are read from the tensor
shapes when omitted; ``steps`` is the default number of decode steps stored in the config (8 for a
multi-step model, 1 for a distilled one). Load the result with
``core.pretrained.from_pretrained(DIR)``.
"""

from __future__ import annotations

import sys

from modalities.image.official.ssdd import import_ssdd

KEYS = ("weights", "out", "encoder", "decoder", "steps")


def parse_args(argv: list[str]) -> dict[str, str]:
    """``key=value`` arguments -> dict; unknown keys and missing ``weights``/``out`` raise."""
    args: dict[str, str] = {}
    for item in argv:
        key, sep, value = item.partition("=")
        if not sep or key not in KEYS:
            raise SystemExit(f"bad argument '{item}': expected key=value with key in {KEYS}\n\n{__doc__}")
        args[key] = value
    missing = [k for k in ("weights", "out") if k not in args]
    if missing:
        raise SystemExit(f"missing {', '.join(f'{k}=...' for k in missing)}\n\n{__doc__}")
    return args


def main(argv: list[str] | None = None) -> str:
    """Run the import; returns the output folder."""
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    out = import_ssdd(
        args["weights"],
        args["out"],
        encoder=args.get("encoder"),
        decoder=args.get("decoder"),
        sample_steps=int(args.get("steps", 8)),
    )
    print(f"wrote {out}")
    return str(out)


if __name__ == "__main__":
    main()
