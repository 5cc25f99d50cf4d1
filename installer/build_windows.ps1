# Build the Windows installer: a PyInstaller one-folder bundle wrapped by Inno Setup into
# casebook-VERSION-setup.exe (Start-menu shortcuts, optional desktop icon, uninstaller).
#
#   powershell -ExecutionPolicy Bypass -File installer\build_windows.ps1 [-Gpu] [-NoTry]
#
# Needs on the build PC: Python 3.11 (x64, python.org), Visual Studio Build Tools (C++; hnswlib and
# Casebook's search module compile from source), Inno Setup 6 (ISCC.exe). The reader's PC needs
# none of them. -Gpu ships onnxruntime's CUDA provider (the PC then needs CUDA 12 and cuDNN 9).
param([switch]$Gpu, [switch]$NoTry)
$ErrorActionPreference = "Stop"
Set-Location (Split-Path -Parent $PSScriptRoot)
$B = "build\installer"
$Py = ".venv\Scripts\python.exe"
function Run($exe, [string[]]$argv) {
    & $exe @argv
    if ($LASTEXITCODE -ne 0) { throw "$exe $($argv -join ' ') failed with exit code $LASTEXITCODE" }
}
$env:HNSWLIB_NO_NATIVE = "1"   # hnswlib would otherwise compile for this CPU only (/arch:AVX2...)
Remove-Item Env:CL -ErrorAction SilentlyContinue  # no extra compiler flags from the environment
if (-not (Test-Path $Py)) {
    Run "py" @("-3.11", "-m", "venv", ".venv")
    Run $Py @("-m", "pip", "install", "-q", "--upgrade", "pip", "setuptools", "wheel", "pybind11>=2.10", "numpy")
    Run $Py @("-m", "pip", "install", "-q", "--no-build-isolation", "-e", ".")
}
if (Test-Path $B) { Remove-Item -Recurse -Force $B }
New-Item -ItemType Directory -Force $B | Out-Null
$env:PYINSTALLER_CONFIG_DIR = (Resolve-Path $B).Path + "\pyinstaller-cache"  # nothing reused between builds
$tools = & $Py -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['project']['optional-dependencies']['bundle']))"
Run $Py (@("-m", "pip", "install", "-q") + $tools)
$version = (& $Py -c "import tomllib; print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])").Trim()

Write-Host "== staging Casebook $version"
Run $Py @("-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-compile", "--target", "$B\stage", ".")
Write-Host "== icons"
Run $Py @("installer\make_icons.py", "$B\icons")

Write-Host "== PyInstaller (one folder)"
$env:CASEBOOK_STAGE = (Resolve-Path "$B\stage").Path
$env:CASEBOOK_ICONS = (Resolve-Path "$B\icons").Path
$env:CASEBOOK_GPU = $(if ($Gpu) { "1" } else { "0" })
$env:PYTHONPATH = $env:CASEBOOK_STAGE
Run $Py @("-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
          "--workpath", "$B\work", "--distpath", "$B\dist", "installer\casebook.spec")
Remove-Item Env:PYTHONPATH
$D = "$B\dist\casebook"
Copy-Item "$B\icons\casebook.ico" "$D\casebook.ico"

Write-Host "== checks"
Run $Py @("installer\check_bundle.py", $D, "--json", "$B\check.json")
if (-not $NoTry) {
    Write-Host "== self-test of the bundle"
    Run $Py @("installer\try_bundle.py", $D, "--json", "$B\try.json")
}

Write-Host "== Inno Setup"
$iscc = (Get-Command ISCC.exe -ErrorAction SilentlyContinue).Source
if (-not $iscc) {
    foreach ($p in @("${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe", "$env:ProgramFiles\Inno Setup 6\ISCC.exe",
                     "$env:LOCALAPPDATA\Programs\Inno Setup 6\ISCC.exe")) {
        if (Test-Path $p) { $iscc = $p; break }
    }
}
if (-not $iscc) { throw "Inno Setup 6 (ISCC.exe) not found: install it from jrsoftware.org, then run this again" }
Run $iscc @("/Q", "/DAppVersion=$version", "/DSourceDir=$((Resolve-Path $D).Path)",
            "/DIconFile=$((Resolve-Path "$B\icons\casebook.ico").Path)", "/DOutputDir=$((Resolve-Path $B).Path)",
            "installer\casebook.iss")
$setup = "$B\casebook-$version-setup.exe"
$mb = [math]::Round((Get-Item $setup).Length / 1MB)
$dmb = [math]::Round(((Get-ChildItem -Recurse -File $D | Measure-Object -Sum Length).Sum) / 1MB)
Write-Host "installer: $setup ($mb MB); bundle $D ($dmb MB)"
