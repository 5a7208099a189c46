"""How every command-line entry point fails: one `error: ...` line on stderr, exit code 2 for bad input
(files, flags, a read-only or full disk, text that is not UTF-8) and 130 for Ctrl-C.

    parser = ArgumentParser(...)          # a bad flag: `error: argument --x: ...`, exit 2, no usage dump
    if __name__ == "__main__":
        sys.exit(run_main(main))          # main's SystemExit("message") / OSError / Ctrl-C as one line

This module knows no configuration of the project.
"""
import argparse
import sys
from typing import Callable, NoReturn

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def one_line(message: object) -> str:
    """`message` as one `error: ...` line (a prefix already there is kept once)."""
    text = " ".join(str(message).split())
    return text if text.startswith("error: ") else f"error: {text}"


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (`error: argument --flag: VALUE: must be ...`) and exit code 2,
    without the usage text (`--help` still prints it)."""

    def error(self, message: str) -> NoReturn:
        print(f"{one_line(message)} (see --help)", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def run_main(main: Callable[[], object]) -> int:
    """Run a command's `main()`; its failures that are the user's input become one line and an exit code:
    SystemExit with a message (2), OSError (2: a read-only folder, a full disk), UnicodeDecodeError (2),
    KeyboardInterrupt (130). An integer returned (or exited with) is the exit code; anything else is 0."""
    try:
        result = main()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(one_line(exc.code), file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UnicodeDecodeError as exc:
        print(one_line(f"text that is not UTF-8 ({exc.reason} at byte {exc.start})"), file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(one_line(f"{where}{exc.strerror or exc}"), file=sys.stderr)
        return EXIT_BAD_INPUT
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
