"""Convert an official DiTo checkpoint (yinboc/dito ``save/<exp>/ckpt-*.pth``) to a difftok folder.

    python -m recipes.image.import_dito ckpt=save/dito-XL-f8c4/ckpt-last.pth out=weights/dito_xl
    python -m recipes.image.import_dito ckpt=PATH out=DIR size=b            # check the size too
    python -m recipes.image.import_dito ckpt=PATH out=DIR drop=zdm_net,zdm_net_ema,renderer_ema

The folder loads with ``core.from_pretrained(DIR)``. ``size`` (b, l, xl) is detected from the
UNet widths when omitted; ``drop`` lists official modules (or tensors) to leave out on purpose,
each with everything under it (the frozen ``lpips_loss`` network is always left out).
"""

from __future__ import annotations

import sys

from modalities.image.official.dito import DEFAULT_DROP_PREFIXES, DiToImport, convert_dito_checkpoint
from recipes.keyvalue import parse_string_pairs

USAGE = "usage: python -m recipes.image.import_dito ckpt=PATH out=DIR [size=b|l|xl] [drop=prefix1,prefix2]"
KEYS = ("ckpt", "out", "size", "drop")


def describe(result: DiToImport, out: str) -> str:
    """A short human-readable summary of an import."""
    lines = [
        f"imported DiTo-{result.size.upper()} from {result.source}"
        + (f" (official iteration {result.iteration})" if result.iteration is not None else ""),
        f"  {result.imported} official tensors -> {len(result.model.state_dict())} difftok tensors, "
        f"{result.num_params / 1e6:.2f}M parameters, all filled, no reshaping",
        f"  dropped on purpose: {len(result.dropped)}" + (f" ({result.dropped[0]} ...)" if result.dropped else ""),
        f"  wrote {out} (config.json, model.safetensors); load with core.from_pretrained('{out}')",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> DiToImport:
    args = parse_string_pairs(list(sys.argv[1:] if argv is None else argv), KEYS, ("ckpt", "out"), USAGE)
    extra_drop = tuple(p for p in args.get("drop", "").split(",") if p)
    result = convert_dito_checkpoint(
        args["ckpt"], args["out"], args.get("size") or None, drop_prefixes=DEFAULT_DROP_PREFIXES + extra_drop
    )
    print(describe(result, args["out"]))
    return result


if __name__ == "__main__":
    main()
