"""tools/pack_submission.py: each server's pack layout, its check, and refusals that write nothing."""
import zipfile
from pathlib import Path

import pytest

from tools import pack_submission as pack

MOT17_TEST = {"MOT17-01": 450, "MOT17-03": 1500, "MOT17-06": 1194, "MOT17-07": 500, "MOT17-08": 625,
              "MOT17-12": 900, "MOT17-14": 750}


def make_test_folder(root: Path, lengths):
    for seq, n in lengths.items():
        (root / seq).mkdir(parents=True)
        (root / seq / "seqinfo.ini").write_text(f"[Sequence]\nname={seq}\nseqLength={n}\n")
    return root


def write_results(folder: Path, names, last_frame=3):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}.txt").write_text("".join(f"{f},1,10,20,30,40,0.9,-1,-1,-1\n"
                                                    for f in range(1, last_frame + 1)))


CASES = {
    "dancetrack": ({"dancetrack0003": 5, "dancetrack0009": 4}, None),
    "sportsmot": ({"v_a_c001": 5, "v_b_c002": 6}, None),
    "mot20": ({"MOT20-04": 2080, "MOT20-06": 1008, "MOT20-07": 585, "MOT20-08": 806}, None),
    "mot17": ({f"{v}-{c}": n for v, n in MOT17_TEST.items() for c in ("DPM", "FRCNN", "SDP")}, MOT17_TEST),
}


@pytest.mark.parametrize("benchmark", sorted(CASES))
def test_pack_has_what_the_server_takes_and_passes_its_check(benchmark, tmp_path):
    lengths, tracked = CASES[benchmark]
    test = make_test_folder(tmp_path / "test", lengths)
    results = tmp_path / "res"
    # MOT17: one run per video on its FRCNN copy (MOTRv2 tracks the video once), copied to the three names
    write_results(results, [f"{v}-FRCNN" for v in tracked] if tracked else list(lengths))
    out = tmp_path / "sub.zip"
    assert pack.main([str(results), "--benchmark", benchmark, "-o", str(out), "--test_folder", str(test)]) == 0
    names = sorted(zipfile.ZipFile(out).namelist())
    folder = "tracker/" if benchmark == "dancetrack" else ""
    assert names == sorted(f"{folder}{seq}.txt" for seq in lengths)
    if benchmark == "mot17":
        assert len(names) == 21
        zf = zipfile.ZipFile(out)
        assert zf.read("MOT17-03-DPM.txt") == zf.read("MOT17-03-SDP.txt") == (results / "MOT17-03-FRCNN.txt").read_bytes()
    pack.check_pack(out.read_bytes(), benchmark, test)  # the server's own check passes


def test_incomplete_or_malformed_packs_are_refused_and_nothing_is_written(tmp_path, capsys):
    lengths = {"dancetrack0003": 5, "dancetrack0009": 4}
    test = make_test_folder(tmp_path / "test", lengths)
    out = tmp_path / "sub.zip"
    argv = ["--benchmark", "dancetrack", "-o", str(out), "--test_folder", str(test)]
    write_results(tmp_path / "half", ["dancetrack0003"])
    assert pack.main([str(tmp_path / "half")] + argv) == 2
    err = capsys.readouterr().err
    assert "dancetrack0009" in err and err.count("\n") == 1 and not out.exists()
    write_results(tmp_path / "long", list(lengths), last_frame=5)  # dancetrack0009 has 4 frames
    assert pack.main([str(tmp_path / "long")] + argv) == 2
    err = capsys.readouterr().err
    assert "dancetrack0009.txt:5: frame 5 is beyond the sequence length 4" in err and not out.exists()
    bad = tmp_path / "bad"
    write_results(bad, list(lengths))
    (bad / "dancetrack0003.txt").write_text("1,1,10,20\n")
    assert pack.main([str(bad)] + argv) == 2
    assert "malformed line" in capsys.readouterr().err and not out.exists()
    # a zip with a sequence left out fails the server's check
    write_results(tmp_path / "ok", list(lengths))
    data = pack.build_pack("dancetrack", tmp_path / "ok", test)
    import io
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(buf, "w") as dst:
        dst.writestr("tracker/dancetrack0003.txt", src.read("tracker/dancetrack0003.txt"))
    with pytest.raises(pack.PackError, match="dancetrack0009"):
        pack.check_pack(buf.getvalue(), "dancetrack", test)
    with pytest.raises(pack.PackError, match="no test server"):
        pack.build_pack("bft", tmp_path / "ok", test)
