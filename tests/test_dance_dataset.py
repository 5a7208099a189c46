"""DanceTrack training clips and the clip-consistent transforms, on a tiny generated dataset."""
import json
import random
import types

import cv2
import numpy as np
import pytest
import torch

from datasets import transforms as T
from datasets.dance import DetMOTDetection, build_dataset, collate_fn, read_mot_gt

W, H = 64, 48
N_FRAMES = 8


def gt_box(frame, track):
    """Pixel x, y, w, h of a track in a frame: x encodes the frame so clips can be read back."""
    return (2 * frame, 5 + 20 * (track - 1), 10 + track, 12)


def det_lines(frame):
    # detection 0 is exactly track 1's box; detection 1 a low-score box elsewhere
    x, y, w, h = gt_box(frame, 1)
    return [f"{x},{y},{w},{h},0.9\n", "40.5,30,8,9,0.25\n"]


@pytest.fixture()
def mot_root(tmp_path):
    db = {}
    for seq in ("dancetrack0001", "dancetrack0002"):
        seq_dir = tmp_path / "DanceTrack" / "train" / seq
        (seq_dir / "img1").mkdir(parents=True)
        (seq_dir / "gt").mkdir()
        lines = []
        for frame in range(1, N_FRAMES + 1):
            # left half dark, right half bright: a flip is visible in the pixels
            img = np.zeros((H, W, 3), np.uint8)
            img[:, W // 2:] = (40, 120, 250)  # BGR on disk
            cv2.imwrite(str(seq_dir / "img1" / f"{frame:08d}.jpg"), img)
            for track in (1, 2):
                x, y, w, h = gt_box(frame, track)
                lines.append(f"{frame},{track},{x},{y},{w},{h},1,1,1")
            lines.append(f"{frame},3,1,1,5,5,0,1,1")   # mark 0: not evaluated -> skipped
            lines.append(f"{frame},4,1,1,5,5,1,3,1")   # label 3 (car): not a person -> skipped
            db[f"DanceTrack/train/{seq}/img1/{frame:08d}.txt"] = det_lines(frame)
        (seq_dir / "gt" / "gt.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "det_db.json").write_text(json.dumps(db))
    return tmp_path


def make_args(root, **over):
    args = dict(mot_path=str(root), det_db="det_db.json", sampler_lengths=[3], sampler_steps=None,
                sample_mode="fixed_interval", sample_interval=2, append_crowd=False)
    args.update(over)
    return types.SimpleNamespace(**args)


PLAIN = T.MotCompose([T.MotToTensor(), T.MotNormalize()])


def expected_cxcywh(frame, track):
    x, y, w, h = gt_box(frame, track)
    return [(x + w / 2) / W, (y + h / 2) / H, w / W, h / H]


def test_clips_frames_and_normalised_boxes(mot_root):
    ds = DetMOTDetection(make_args(mot_root), transform=PLAIN)
    # start frames 1..5 per video (room for 3 frames), two videos
    assert len(ds) == 10
    assert ds.indices[:5] == [("DanceTrack/train/dancetrack0001", t) for t in range(1, 6)]
    clip = ds[4]  # video 1, start 5, interval 2 -> frames 5, 7, then 9 clamped to 8
    assert ds.sample_frames("DanceTrack/train/dancetrack0001", 5) == [5, 7, 8]
    assert len(clip["imgs"]) == len(clip["gt_instances"]) == len(clip["proposals"]) == 3
    for img, gt, props, frame in zip(clip["imgs"], clip["gt_instances"], clip["proposals"], [5, 7, 8]):
        assert img.shape == (3, H, W) and img.dtype == torch.float32
        assert gt.image_size == (H, W)
        assert torch.allclose(gt.boxes, torch.tensor([expected_cxcywh(frame, 1), expected_cxcywh(frame, 2)]))
        assert gt.labels.tolist() == [0, 0] and gt.obj_ids.dtype == torch.float64
        assert gt.obj_ids.tolist() == [1.0, 2.0]
        assert props.shape == (2, 5)
        assert torch.allclose(props[0], torch.tensor(expected_cxcywh(frame, 1) + [0.9]))
        assert torch.allclose(props[1], torch.tensor([44.5 / W, 34.5 / H, 8 / W, 9 / H, 0.25]))
    # normalised pixels: the bright right half (RGB 250,120,40 decoded from BGR) is red-dominant
    right = clip["imgs"][0][:, :, -4:].mean(dim=(1, 2))
    assert right[0] > right[1] > right[2]
    # second video: ids offset so that they are unique over the dataset
    assert ds[5]["gt_instances"][0].obj_ids.tolist() == [100001.0, 100002.0]


def test_random_interval_steps_and_curriculum(mot_root):
    ds = DetMOTDetection(make_args(mot_root, sample_mode="random_interval", sample_interval=3,
                                   sampler_lengths=[2, 3, 4], sampler_steps=[2, 4]), transform=PLAIN)
    random.seed(0)
    steps = set()
    for _ in range(200):
        frames = ds.sample_frames("DanceTrack/train/dancetrack0001", 1)
        steps.add(frames[1] - frames[0])
    assert steps == {1, 2, 3, 4}  # randint(1, interval + 1), both ends included, as upstream
    assert len(ds.indices) == 2 * (N_FRAMES - 4)  # room for the longest clip
    for epoch, length in [(0, 2), (1, 2), (2, 3), (3, 3), (4, 4), (9, 4)]:
        ds.set_epoch(epoch)
        assert ds.num_frames_per_batch == length
        assert len(ds[0]["imgs"]) == length
    ds.set_epoch(1)
    ds.step_epoch()
    assert ds.current_epoch == 2 and ds.num_frames_per_batch == 3


def test_flip_is_applied_to_every_frame_boxes_and_proposals(mot_root):
    plain = DetMOTDetection(make_args(mot_root), transform=PLAIN)[0]
    flip = T.MotCompose([T.MotRandomHorizontalFlip(p=1.0), T.MotToTensor(), T.MotNormalize()])
    flipped = DetMOTDetection(make_args(mot_root), transform=flip)[0]
    mirror = torch.tensor([-1.0, 1.0, 1.0, 1.0]), torch.tensor([1.0, 0.0, 0.0, 0.0])
    for a, b in zip(plain["gt_instances"], flipped["gt_instances"]):
        assert torch.allclose(b.boxes, a.boxes * mirror[0] + mirror[1], atol=1e-6)
    for a, b in zip(plain["proposals"], flipped["proposals"]):
        assert torch.allclose(b[:, :4], a[:, :4] * mirror[0] + mirror[1], atol=1e-6)
        assert torch.equal(b[:, 4], a[:, 4])
    for a, b in zip(plain["imgs"], flipped["imgs"]):
        assert torch.equal(b, a.flip(-1))


def test_training_augmentation_keeps_gt_and_proposals_together(mot_root):
    """Detection 0 is exactly track 1's box; whatever flip/resize/crop/HSV is drawn, the two must
    still coincide, stay inside the image, and all frames of a clip must share one size."""
    args = make_args(mot_root, train_scales=[32, 40], train_max_size=80, train_crop_scales=[48],
                     train_crop_size=[24, 40])
    ds = build_dataset("train", args)
    sizes = set()
    for seed in range(12):
        random.seed(seed)
        clip = ds[seed % len(ds)]
        shapes = {tuple(img.shape) for img in clip["imgs"]}
        assert len(shapes) == 1
        shape = shapes.pop()
        sizes.add(shape)
        assert min(shape[1:]) in (32, 40)
        for gt, props in zip(clip["gt_instances"], clip["proposals"]):
            assert gt.image_size == shape[1:]
            assert ((gt.boxes >= 0) & (gt.boxes <= 1)).all() and ((props[:, :4] >= 0) & (props[:, :4] <= 1)).all()
            track1 = gt.boxes[gt.obj_ids % 100000 == 1]
            det0 = props[props[:, 4] == 0.9, :4]
            assert len(track1) == len(det0)  # dropped together by a crop, or kept together
            assert torch.allclose(track1, det0, atol=1e-6)
    assert len(sizes) > 1  # the scales were actually drawn


def test_missing_det_db_key_names_the_key_and_frame(mot_root):
    db = json.loads((mot_root / "det_db.json").read_text())
    del db["DanceTrack/train/dancetrack0001/img1/00000003.txt"]
    (mot_root / "det_db.json").write_text(json.dumps(db))
    ds = DetMOTDetection(make_args(mot_root), transform=PLAIN)
    ds[1]  # frames 2, 4, 6: fine
    with pytest.raises(KeyError, match=r"DanceTrack/train/dancetrack0001/img1/00000003\.txt.*frame 3 of"):
        ds[0]  # frames 1, 3, 5


def test_bad_det_line_missing_and_corrupt_images_are_named(mot_root):
    db = json.loads((mot_root / "det_db.json").read_text())
    db["DanceTrack/train/dancetrack0001/img1/00000001.txt"] = ["1,2,3,4,0.5\n", "1,2,three,4,0.5\n"]
    (mot_root / "det_db.json").write_text(json.dumps(db))
    ds = DetMOTDetection(make_args(mot_root), transform=PLAIN)
    with pytest.raises(ValueError, match=r"00000001\.txt.*line 2"):
        ds[0]
    seq = mot_root / "DanceTrack" / "train" / "dancetrack0002" / "img1"
    (seq / "00000005.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"image not found: .*dancetrack0002/img1/00000005\.jpg"):
        ds[7]  # video 2, start 3: frames 3, 5, 7
    (seq / "00000003.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(FileNotFoundError, match=r"cannot decode image .*00000003\.jpg"):
        ds[7]


def test_gt_reader_filters_and_groups(mot_root):
    labels = read_mot_gt(str(mot_root / "DanceTrack/train/dancetrack0001/gt/gt.txt"))
    assert sorted(labels) == list(range(1, N_FRAMES + 1))
    assert labels[3].tolist() == [[*gt_box(3, 1), 1], [*gt_box(3, 2), 2]]
    bad = mot_root / "bad_gt.txt"
    bad.write_text("1,1,2,3\n")
    with pytest.raises(ValueError, match="bad_gt.txt"):
        read_mot_gt(str(bad))


def test_without_det_db_proposals_are_empty(mot_root):
    clip = DetMOTDetection(make_args(mot_root, det_db=""), transform=PLAIN)[0]
    assert all(p.shape == (0, 5) for p in clip["proposals"])
    assert all(len(g) == 2 for g in clip["gt_instances"])


def test_collate_unwraps_a_single_clip(mot_root):
    ds = DetMOTDetection(make_args(mot_root), transform=PLAIN)
    one = collate_fn([ds[0]])
    assert isinstance(one["imgs"], list) and torch.is_tensor(one["imgs"][0]) and len(one["imgs"]) == 3
    two = collate_fn([ds[0], ds[1]])
    assert len(two["imgs"]) == 2 and len(two["imgs"][1]) == 3


def test_crowdhuman_stills_become_shifted_clips(mot_root):
    ch = mot_root / "crowdhuman"
    (ch / "Images").mkdir(parents=True)
    # large enough that three shifts of up to 50 px cannot push the box out
    cv2.imwrite(str(ch / "Images" / "img01.jpg"), np.full((480, 640, 3), 128, np.uint8))
    anns = {"ID": "img01", "gtboxes": [{"fbox": [300, 220, 40, 60]},
                                        {"fbox": [0, 0, 5, 5], "extra": {"ignore": 1}}]}
    (ch / "annotation_trainval.odgt").write_text(json.dumps(anns) + "\n")
    db = json.loads((mot_root / "det_db.json").read_text())
    db["crowdhuman/train_image/img01.txt"] = ["300,220,40,60,0.8\n"]
    (mot_root / "det_db.json").write_text(json.dumps(db))
    ds = DetMOTDetection(make_args(mot_root, append_crowd=True, sampler_lengths=[4]), transform=PLAIN)
    assert len(ds) == 2 * (N_FRAMES - 4) + 1
    random.seed(1)
    clip = ds[len(ds) - 1]
    assert len(clip["imgs"]) == 4 and all(img.shape == (3, 480, 640) for img in clip["imgs"])
    centres = []
    for gt, props in zip(clip["gt_instances"], clip["proposals"]):
        assert gt.obj_ids.tolist() == [0]  # the ignore box is not a target
        assert torch.allclose(gt.boxes, props[:, :4], atol=1e-6)  # the detection moved with the gt
        centres.append(gt.boxes[0, :2])
    assert torch.allclose(centres[0], torch.tensor([320 / 640, 250 / 480]))
    assert not torch.allclose(centres[1], centres[0])  # the still image was moved


# -- transforms -------------------------------------------------------------------------------
def test_resized_size_follows_the_detr_rule():
    # 1920x1080 at short side 800: long side 1422 fits under 1536
    assert T.resized_hw(1080, 1920, 800, 1536) == (800, 1422)
    # at 992 the long side would be 1763: short side lowered to round(1536 * 1080 / 1920) = 864
    assert T.resized_hw(1080, 1920, 992, 1536) == (864, 1536)
    assert T.resized_hw(1920, 1080, 608, None) == (1080, 608)
    assert T.resized_hw(600, 800, 600, 1333) == (600, 800)


def test_crop_drops_boxes_with_their_gt_fields():
    img = np.zeros((40, 60, 3), np.uint8)
    target = {"boxes": torch.tensor([[5.0, 5, 15, 15], [45, 5, 55, 15], [10, 30, 50, 38], [50, 0, 58, 8]]),
              "scores": torch.tensor([1.0, 1.0, 0.7, 0.6]),
              "labels": torch.zeros(2, dtype=torch.long), "obj_ids": torch.tensor([3.0, 4.0], dtype=torch.float64)}
    out_img, out = T.crop_frame(img, target, (0, 0, 40, 30))  # keep x in [0, 30)
    assert out_img.shape == (40, 30, 3)
    assert out["obj_ids"].tolist() == [3.0] and out["labels"].tolist() == [0]
    assert out["boxes"].tolist() == [[5, 5, 15, 15], [10, 30, 30, 38]]  # 2nd clipped at the border
    assert out["scores"].tolist() == pytest.approx([1.0, 0.7])


def test_hsv_jitter_is_the_same_for_every_frame():
    frames = [np.random.default_rng(i).integers(0, 256, (8, 8, 3), dtype=np.uint8) for i in range(2)]
    frames.append(frames[0].copy())
    random.seed(4)
    out, _ = T.MOTHSV()(frames, [None] * 3)
    assert np.array_equal(out[0], out[2])
    random.seed(4)
    offsets = T.MOTHSV().draw_offsets()
    assert offsets.any() and np.array_equal(out[1], T.MOTHSV.apply(frames[1], offsets))
