"""MOTRv2 with the TF-SASM sparse memory. `build_model(args)` -> (model, criterion, postprocessors)."""


def build_model(args):
    """Upstream's builder: the network with upstream's inference API (`models.compat.UpstreamMOTR`)."""
    from .compat import build_model as build
    return build(args)
