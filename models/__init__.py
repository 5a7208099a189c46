"""MOTRv2 with the TF-SASM sparse memory. `build_model(args)` -> (model, criterion, postprocessors)."""


def build_model(args):
    from .motr import build
    return build(args)
