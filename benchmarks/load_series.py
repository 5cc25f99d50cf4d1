"""Series loading benchmark: Casebook against SimpleITK, plain pydicom and dcm2niix, in one run.

Each tool gets a folder and must produce the voxel volume of the series in it:

* Casebook: ``scan(folder)`` (headers, in parallel) + ``load_volume`` of the stack.
* SimpleITK: ``ImageSeriesReader`` over ``GetGDCMSeriesFileNames`` (the usual ITK recipe).
* pydicom: ``dcmread`` every file, sort on ImagePositionPatient, stack ``pixel_array`` with rescale
  (what a plain script does).
* dcm2niix: the C converter, writing an uncompressed NIfTI into a temp folder (``-z n``); its
  time includes starting the process and writing the file (~ one copy of the volume).

Series: the longest shared CT and MR series (``../shared/data``), and a 400-slice 512x512 CT the
benchmark writes into a temp folder by restacking the real Philips CT slices of dcm_qa_ct at new
positions (0.625 mm apart), plus JPEG-LS and JPEG 2000 lossless copies of it (GDCM encodes).
Every timing is the median of ``--repeat`` runs with the files in the page cache (first run is
a warm-up; the timed runs of the tools are interleaved round by round). Ratios > 1 mean the other tool is slower than Casebook. Casebook decodes large
compressed stacks in spawned worker processes that stay up between loads; so that their start-up
is not hidden, they are stopped before each series and Casebook's first (cold) call is reported
as well, with SimpleITK's median over it.

    .venv/bin/python benchmarks/load_series.py [--repeat 5] [--slices 400] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from casebook.viewer.core.dicom import _codec, load_volume, scan

REPO = Path(__file__).resolve().parents[1]


def shared_root() -> Path:
    env = os.environ.get("CASEBOOK_SHARED")
    for c in ([Path(env)] if env else []) + [REPO.parent / "shared"]:
        if (c / "data" / "dicom").is_dir():
            return c / "data" / "dicom"
    sys.exit("shared data not found: set CASEBOOK_SHARED")


# ---------------------------------------------------------------------------------- loaders

def load_casebook(folder: Path) -> np.ndarray:
    res = scan([folder])
    stack = max(res.stacks, key=lambda s: len(s.instances))
    return load_volume(stack).voxels


def load_sitk(folder: Path) -> object:
    """Returns the SimpleITK image (voxels stay in ITK memory: no copy is charged to it)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(folder))
    reader.SetFileNames(names)
    return reader.Execute()


def load_pydicom(folder: Path) -> np.ndarray:
    dss = [pydicom.dcmread(p) for p in sorted(folder.iterdir()) if p.is_file()]
    dss = [d for d in dss if "PixelData" in d]
    o = np.array(dss[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(o[:3], o[3:])
    dss.sort(key=lambda d: float(np.dot(np.array(d.ImagePositionPatient, dtype=float), normal)))
    vol = np.stack([d.pixel_array * float(d.get("RescaleSlope", 1)) + float(d.get("RescaleIntercept", 0))
                    for d in dss])
    return vol


def load_dcm2niix(folder: Path) -> np.ndarray | None:
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-f", "vol", "-o", out, str(folder)],
                       check=True, capture_output=True)
    return None


LOADERS: dict[str, Callable[[Path], object]] = {
    "casebook": load_casebook,
    "simpleitk": load_sitk,
    "pydicom": load_pydicom,
    "dcm2niix": load_dcm2niix,
}


# ---------------------------------------------------------------------------------- series

def longest_series(root: Path, modality: str) -> tuple[Path, int]:
    """Folder of the image stack with the most slices of ``modality`` (single-frame files)."""
    best: tuple[int, Path | None] = (0, None)
    res = scan([root])
    for s in res.stacks:
        if s.modality != modality or s.instances[0].frame_index is not None:
            continue
        folders = {h.path.parent for h in s.instances}
        if len(folders) != 1:
            continue
        folder = folders.pop()
        # The folder must hold only this stack for every tool to see the same series.
        n_in_folder = sum(1 for p in folder.iterdir() if p.is_file())
        if n_in_folder == len(s.instances) and len(s.instances) > best[0]:
            best = (len(s.instances), folder)
    if best[1] is None:
        sys.exit(f"no {modality} series found under {root}")
    return best[1], best[0]


def write_restacked_ct(src: Path, out: Path, n: int, step: float = 0.625) -> None:
    """A ``n``-slice 512x512 CT made of real slices re-positioned along z (new UIDs)."""
    files = sorted(p for p in src.iterdir() if p.is_file() and p.name != "DIRFILE")
    dss = [pydicom.dcmread(p) for p in files]
    dss = [d for d in dss if d.get("Rows") == 512 and d.get("Columns") == 512]
    dss.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    series_uid, study_uid = generate_uid(), generate_uid()
    x0, y0, z0 = (float(v) for v in dss[0].ImagePositionPatient)
    out.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        # Walk back and forth through the real slices so neighbours stay similar.
        period = 2 * (len(dss) - 1)
        i = k % period
        d = dss[i if i < len(dss) else period - i]
        d.SeriesInstanceUID = series_uid
        d.StudyInstanceUID = study_uid
        d.SOPInstanceUID = generate_uid()
        d.file_meta.MediaStorageSOPInstanceUID = d.SOPInstanceUID
        d.InstanceNumber = k + 1
        d.ImagePositionPatient = [x0, y0, z0 + k * step]
        d.SliceLocation = z0 + k * step
        d.save_as(out / f"IM{k:05d}.dcm", enforce_file_format=True)


def transcode(src: Path, out: Path, syntax: str) -> None:
    import gdcm

    ts = {"jpegls": gdcm.TransferSyntax.JPEGLSLossless, "j2k": gdcm.TransferSyntax.JPEG2000Lossless}[syntax]
    out.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.iterdir()):
        r = gdcm.ImageReader()
        r.SetFileName(str(p))
        if not r.Read():
            raise RuntimeError(f"GDCM cannot read {p}")
        c = gdcm.ImageChangeTransferSyntax()
        c.SetTransferSyntax(gdcm.TransferSyntax(ts))
        c.SetInput(r.GetImage())
        if not c.Change():
            raise RuntimeError(f"GDCM cannot encode {p} as {syntax}")
        w = gdcm.ImageWriter()
        w.SetFileName(str(out / p.name))
        w.SetFile(r.GetFile())
        w.SetImage(c.GetOutput())
        if not w.Write():
            raise RuntimeError(f"GDCM cannot write {out / p.name}")


# ---------------------------------------------------------------------------------- timing

def timed(tool: str, folder: Path) -> float:
    """Seconds one call of ``tool`` takes to load ``folder``."""
    t = time.perf_counter()
    LOADERS[tool](folder)
    return time.perf_counter() - t


def _fmt(x: float, spec: str) -> str:
    return "n/a" if x != x else spec.format(x)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--slices", type=int, default=400)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--tools", nargs="*", default=list(LOADERS))
    args = ap.parse_args(argv)
    if shutil.which("dcm2niix") is None and "dcm2niix" in args.tools:
        args.tools.remove("dcm2niix")
        print("dcm2niix not installed: skipped", file=sys.stderr)
    root = shared_root()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = []
    with tempfile.TemporaryDirectory(prefix="casebook-bench-") as tmp:
        tmpd = Path(tmp)
        ct_folder, ct_n = longest_series(root / "dcm_qa_ct", "CT")
        mr_folder, mr_n = longest_series(root, "MR")
        big = tmpd / "ct400"
        print(f"writing {args.slices}-slice 512x512 CT (restacked from the Philips dcm_qa_ct slices) ...", file=sys.stderr)
        write_restacked_ct(root / "dcm_qa_ct" / "In" / "Philips" / "S21570" / "S2010", big, args.slices)
        print("encoding JPEG-LS and JPEG 2000 copies ...", file=sys.stderr)
        transcode(big, tmpd / "ct400_jls", "jpegls")
        transcode(big, tmpd / "ct400_j2k", "j2k")
        cases = [
            (f"shared CT {ct_folder.name} ({ct_n} sl)", ct_folder),
            (f"shared MR {mr_folder.name} ({mr_n} sl)", mr_folder),
            (f"CT {args.slices}x512x512 uncompressed", big),
            (f"CT {args.slices}x512x512 JPEG-LS", tmpd / "ct400_jls"),
            (f"CT {args.slices}x512x512 JPEG 2000", tmpd / "ct400_j2k"),
        ]
        ref = load_casebook(big)
        import SimpleITK as sitk

        check = sitk.GetArrayFromImage(load_sitk(tmpd / "ct400_j2k"))  # type: ignore[arg-type]
        if not np.array_equal(check, ref):
            print("warning: SimpleITK and Casebook volumes differ on the JPEG 2000 series", file=sys.stderr)
        for label, folder in cases:
            row: dict[str, object] = {"series": label}
            # Warm-up (first) calls, then the timed calls interleaved round by round, so that a
            # burst of load from elsewhere on the machine hits every tool alike.
            times: dict[str, list[float]] = {}
            for tool in args.tools:
                print(f"  {label}: {tool} ...", file=sys.stderr)
                if tool == "casebook":
                    # Cold start for every series: the spawned decode processes are started by
                    # the first call (compressed stacks only), and that call is reported too.
                    _codec.shutdown_pool()
                try:
                    row["casebook_first" if tool == "casebook" else f"{tool}_first"] = timed(tool, folder)
                    times[tool] = []
                except (subprocess.CalledProcessError, RuntimeError) as exc:
                    # e.g. Debian's dcm2niix is built without JPEG-LS: say so in the table.
                    print(f"    {tool} cannot load it: {exc}", file=sys.stderr)
                    row[tool] = float("nan")
            for _ in range(args.repeat):
                for tool in times:
                    times[tool].append(timed(tool, folder))
            for tool, ts in times.items():
                row[tool] = statistics.median(ts)
            rows.append(row)
    cold = "casebook" in args.tools and "simpleitk" in args.tools
    header = (["series"] + [f"{t} s" for t in args.tools] + [f"{t}/casebook" for t in args.tools if t != "casebook"]
              + (["casebook 1st call s", "simpleitk/1st"] if cold else []))
    table = []
    for r in rows:
        cb = float(r["casebook"])  # type: ignore[arg-type]
        line = ([str(r["series"])] + [_fmt(float(r[t]), "{:.3f}") for t in args.tools]  # type: ignore[arg-type]
                + [_fmt(float(r[t]) / cb, "{:.2f}x") for t in args.tools if t != "casebook"])  # type: ignore[arg-type]
        if cold:
            first = float(r.get("casebook_first", float("nan")))  # type: ignore[arg-type]
            line += [_fmt(first, "{:.3f}"), _fmt(float(r["simpleitk"]) / first, "{:.2f}x")]  # type: ignore[arg-type]
        table.append(line)
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    # Other work on the machine skews the ratios: the 1-minute load average says how busy it was.
    print(f"load average {load_before:.2f} before, {load_after:.2f} after (this run adds ~1-2)")
    print(f"cores: {os.cpu_count()}, median of {args.repeat} warm runs (interleaved); '1st call' = Casebook's first load of "
          f"the series in a fresh state (decode processes spawned, {_codec.pool_workers()} here, included)")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
