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
from recipes.keyvalue import parse_string_pairs

KEYS = ("weights", "out", "encoder", "decoder", "steps")


def main(argv: list[str] | None = None) -> str:
    """Run the import; returns the output folder."""
    args = parse_string_pairs(list(sys.argv[1:] if argv is None else argv), KEYS, ("weights", "out"), __doc__ or "")
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
