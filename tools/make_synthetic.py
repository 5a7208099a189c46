"""Write the synthetic DanceTrack data set (train + val splits and one det_db).

    python tools/make_synthetic.py --out data/synthetic --seed 0

Layout: <out>/DanceTrack/{train,val}/<seq>/{img1,gt,seqinfo.ini}, seqmaps and
manifests next to the split dirs, and <out>/det_db_synthetic.json. Train with
``--mot_path <out> --det_db det_db_synthetic.json``. Splits whose manifest
matches the requested parameters are left as they are.

--layout writes another dataset's layout instead (sportsmot: SportsMOT/<split>/, mot17:
MOT17/<split>/MOT17-NN-{DPM,FRCNN,SDP}/ with det/det.txt, bft: BFT as released, for
tools/convert_bft.py); see datasets/synthetic.py.
"""
from __future__ import annotations

import argparse
import time


from datasets.synthetic import DET_DB_NAME, LAYOUTS, make_dataset


def _range_arg(values: list, name: str):
    if len(values) not in (1, 2):
        raise SystemExit(f"--{name} takes one value or two (lo hi), got {values}")
    return values[0] if len(values) == 1 else tuple(values)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="mot_path: the data root that will hold DanceTrack/")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_train", type=int, default=8, help="train sequences (0: no train split)")
    parser.add_argument("--num_val", type=int, default=3, help="val sequences (0: no val split)")
    parser.add_argument("--frames", type=int, nargs="+", default=[60, 100],
                        help="frames per sequence: N, or LO HI drawn per sequence")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--dancers", type=int, nargs="+", default=[5, 8],
                        help="dancers per sequence: N, or LO HI drawn per sequence")
    parser.add_argument("--jpeg_quality", type=int, default=90)
    parser.add_argument("--layout", default="dancetrack", choices=LAYOUTS,
                        help="on-disk layout of the dataset named (default dancetrack)")
    parser.add_argument("--det_db_name", default=DET_DB_NAME)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace split dirs that exist but were not made by this generator")
    args = parser.parse_args(argv)

    splits = {name: n for name, n in (("train", args.num_train), ("val", args.num_val)) if n > 0}
    if not splits:
        raise SystemExit("nothing to do: --num_train and --num_val are both 0")
    start = time.perf_counter()
    info = make_dataset(args.out, splits=splits, seed=args.seed, det_db_name=args.det_db_name,
                        progress=True, num_frames=_range_arg(args.frames, "frames"),
                        width=args.width, height=args.height,
                        num_dancers=_range_arg(args.dancers, "dancers"),
                        jpeg_quality=args.jpeg_quality, overwrite=args.overwrite, layout=args.layout)
    for split, split_info in info["splits"].items():
        state = "up to date, skipped" if split_info["skipped"] else f"written in {split_info['seconds']:.1f}s"
        print(f"{split}: {len(split_info['sequences'])} sequences at {split_info['split_dir']} ({state})")
    print(f"det_db: {info['det_db_path']}  (use --mot_path {info['mot_path']} --det_db {info['det_db']})")
    print(f"total {time.perf_counter() - start:.1f}s")
    return info


if __name__ == "__main__":
    main()
