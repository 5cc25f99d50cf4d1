"""PACS retrieve benchmark: Casebook's C-MOVE and WADO-RS beside dcmtk's movescu and curl, in one run.

A throwaway Orthanc (Debian packages orthanc + orthanc-dicomweb, as the tests start it) is
filled with a few hundred real shared files (dcm_qa_ge 3D T1, dcm_qa_nih EPI, dcm_qa_ct GE and
Philips CT), then every study is pulled back, round by round, by:

* casebook C-MOVE: ``dimse.move_series`` into Casebook's storage SCP, files written byte for byte
  into the received folder (the network part of ``casebook pacs move``);
* dcmtk movescu: ``movescu -S`` with its own storage SCP (``--port``), writing files (``-od``);
* casebook WADO-RS: ``dicomweb.retrieve_series``, one instance at a time off the multipart stream,
  each written as a file (the network part of ``casebook web get``);
* curl WADO-RS: the study's multipart/related body saved as one file, nothing parsed (the floor);
* casebook pacs move end to end: the whole ``retrieve_study`` (series query, C-MOVE, ingest into a
  fresh library; no embedding, which benchmarks/encode_throughput.py measures).

Each figure is the median of ``--repeat`` rounds (the first round is a warm-up, not counted);
images/s counts the images received. Ratios > 1 mean Casebook is faster.

    .venv/bin/python benchmarks/pacs.py [--repeat 3] [--out benchmarks/results/pacs.txt]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.orthanc import Orthanc, casebook_settings, dicom_files, free_port, orthanc_available  # noqa: E402

from casebook.viewer.core.services import pacs  # noqa: E402
from casebook.viewer.core.services.pacs import dicomweb, dimse  # noqa: E402
from casebook.viewer.core.services.pacs.storage import count_files  # noqa: E402

SETS = ("dcm_qa_ge/In/05_3D_Ax_T1_MP_RAGE_R22", "dcm_qa_nih/In", "dcm_qa_ct/In/GE", "dcm_qa_ct/In/Philips")


def shared_dicom() -> Path:
    env = os.environ.get("CASEBOOK_SHARED")
    for c in ([Path(env)] if env else []) + [REPO.parent / "shared"]:
        if (c / "data" / "dicom").is_dir():
            return c / "data" / "dicom"
    sys.exit("shared data not found: set CASEBOOK_SHARED")


def files_in(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = ap.parse_args()
    why = orthanc_available()
    if why:
        sys.exit(why)
    for tool in ("movescu", "curl"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed (scripts/setup.sh --test installs dcmtk; curl is a Debian package)")
    root = shared_dicom()
    files = [f for s in SETS for f in dicom_files(root / s)]
    tmp = Path(tempfile.mkdtemp(prefix="casebook-pacs-bench-"))
    scp_port, dcmtk_port = free_port(), free_port()
    orthanc = Orthanc(tmp / "orthanc", modalities={"casebook": ("CASEBOOK", scp_port),
                                                   "dcmtk": ("DCMTK", dcmtk_port)}).start()
    try:
        t0 = time.perf_counter()
        orthanc.upload(files)
        upload_s = time.perf_counter() - t0
        settings = casebook_settings(tmp, orthanc, scp_port)
        cfg = pacs.load_config(settings)
        dn, wn = cfg.node("pacs"), cfg.node("web")
        studies = pacs.search(settings, pacs.StudyQuery(), "pacs")
        series = {s.study_uid: [r.series_uid for r in dimse.find_series(cfg, dn, s.study_uid)] for s in studies}
        n_images = sum(s.images or 0 for s in studies)
        print(f"{len(files)} files uploaded in {upload_s:.1f} s; {len(studies)} studies, "
              f"{sum(len(v) for v in series.values())} series, {n_images} images", flush=True)

        def casebook_move(out: Path) -> int:
            with pacs.StorageSCP(out, ae_title="CASEBOOK", bind="127.0.0.1", port=scp_port,
                                 allowed_aets=[orthanc.aet]) as scp:
                for uid, sers in series.items():
                    with scp.expect(uid):
                        dimse.move_series(cfg, dn, uid, sers, tick=lambda: None)
            return sum(count_files(d) for d in (out / "received").glob("*/*"))

        def dcmtk_move(out: Path) -> int:
            out.mkdir(parents=True, exist_ok=True)
            for uid in series:
                subprocess.run(["movescu", "-S", "-aet", "DCMTK", "-aec", orthanc.aet, "-aem", "DCMTK",
                                "--port", str(dcmtk_port), "-k", "QueryRetrieveLevel=STUDY",
                                "-k", f"StudyInstanceUID={uid}", "-od", str(out), "127.0.0.1",
                                str(orthanc.dicom_port)], check=True, capture_output=True)
            return files_in(out)

        def casebook_wado(out: Path) -> int:
            for uid, sers in series.items():
                dicomweb.retrieve_series(cfg, wn, uid, sers, out, tick=lambda s: None)
            return sum(count_files(d) for d in (out / "received").glob("*/*"))

        def curl_wado(out: Path) -> int:
            out.mkdir(parents=True, exist_ok=True)
            for i, uid in enumerate(series):
                subprocess.run(["curl", "-sf", "-H", 'Accept: multipart/related; type="application/dicom"',
                                "-o", str(out / f"study{i}.multipart"), f"{orthanc.dicomweb_url}/studies/{uid}"],
                               check=True)
            return n_images  # one body per study; the images are in it, unparsed

        def casebook_retrieve(out: Path) -> int:
            s = casebook_settings(out, orthanc, scp_port, library=out / "library")
            got = 0
            for st in studies:
                r = pacs.retrieve_study(s, st.study_uid, node="pacs", method="move", embed=False)
                got += r.transferred
            return got

        runs = {"casebook C-MOVE": casebook_move, "dcmtk movescu": dcmtk_move, "casebook WADO-RS": casebook_wado,
                "curl WADO-RS (unparsed)": curl_wado, "casebook pacs move + ingest": casebook_retrieve}
        times: dict[str, list[float]] = {k: [] for k in runs}
        counts: dict[str, int] = {}
        for rnd in range(args.repeat + 1):
            for name, fn in runs.items():
                out = tmp / f"r{rnd}-{name.split()[0]}-{len(times[name])}-{abs(hash(name)) % 1000}"
                t0 = time.perf_counter()
                counts[name] = fn(out)
                dt = time.perf_counter() - t0
                if rnd > 0:
                    times[name].append(dt)
                shutil.rmtree(out, ignore_errors=True)
            print(f"round {rnd}{' (warm-up)' if rnd == 0 else ''} done", flush=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        lines = [f"# .venv/bin/python benchmarks/pacs.py --repeat {args.repeat} ({os.cpu_count()} cores, "
                 f"{time.strftime('%Y-%m-%d')}, Orthanc on loopback)",
                 f"retrieve of {len(studies)} studies / {n_images} real shared images ({sum(f.stat().st_size for f in files) / 1e6:,.0f} MB) "
                 f"from a local Orthanc, median of {args.repeat} rounds", "",
                 f"{'run':<34}{'seconds':>10}{'images/s':>12}{'images':>9}", "-" * 65]
        for k in runs:
            lines.append(f"{k:<34}{med[k]:>10.2f}{counts[k] / med[k]:>12,.0f}{counts[k]:>9}")
        lines += ["", f"casebook C-MOVE vs dcmtk movescu:    {med['dcmtk movescu'] / med['casebook C-MOVE']:.2f}x",
                  f"casebook WADO-RS vs curl (unparsed):  {med['curl WADO-RS (unparsed)'] / med['casebook WADO-RS']:.2f}x",
                  "(>1: casebook faster)"]
        text = "\n".join(lines)
        print(text)
        if args.out:
            args.out.write_text(text + "\n", encoding="utf-8")
        bad = [k for k in ("casebook C-MOVE", "dcmtk movescu", "casebook WADO-RS", "casebook pacs move + ingest")
               if counts[k] != n_images]
        if bad:
            print(f"WARNING: {', '.join(bad)} received a different number of images than the {n_images} listed",
                  file=sys.stderr)
            return 1
        return 0
    finally:
        orthanc.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
