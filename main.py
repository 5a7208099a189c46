"""MOTRv2 training.

    python main.py $(cat configs/motrv2.args) --mot_path DATA --output_dir exps/motrv2
    torchrun --nproc_per_node 8 main.py $(cat configs/motrv2.args) ...

Flags (util/args.py) keep upstream MOTRv2's names and defaults, so existing .args files and scripts work.
"""
import argparse

from util.args import get_args_parser, warn_inert_flags  # noqa: F401  (main.get_args_parser, as upstream)


def main(args):
    from engine import train
    warn_inert_flags(args)
    train(args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser("MOTRv2 training", parents=[get_args_parser()])
    main(parser.parse_args())
