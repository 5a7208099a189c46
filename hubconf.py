"""torch.hub entry points, as DETR's:

    tracker = torch.hub.load("path/to/this/repo", "motrv2", source="local",
                             checkpoint="motrv2_dancetrack.pth", config="tfsasm")
    tracks = tracker.update(dets, frame_bgr)   # (M, 8): x1, y1, x2, y2, id, conf, cls, det_ind
"""
dependencies = ["torch", "torchvision", "numpy", "cv2", "scipy"]


def motrv2(checkpoint, config=None, device="auto", **flags):
    """A `models.tracker.Tracker` for `checkpoint` (path to MOTRv2 weights), built from `config` (an `.args`
    file or "motrv2", "tfsasm", "tfsasm_paper"; None: the checkpoint's model card, else its training
    args, else "motrv2") with any submit_dance.py flag as a keyword."""
    from models.tracker import Tracker
    return Tracker.from_checkpoint(checkpoint, config=config, device=device, **flags)
