@echo off
rem Sets the project up in .venv on Windows, as setup.sh does on Linux: torch (the
rem CUDA build that fits this driver and card, checked on the GPU, else the CPU build),
rem llama-cpp-python, the requirements constrained to that torch, and a .env.
rem The choices are made by engine\setup\helper.py, the same code setup.sh runs.
rem Not run in CI (CI runs Linux); see docs/setup.md.
rem   setup.bat            everything but the model weights
rem   setup.bat --models   also download the ACE-Step 1.5 weights
rem   setup.bat --cpu      the CPU build of torch even if a GPU is present
rem   setup.bat --dry-run  print every command it would run, torch's included; change nothing
rem Environment: PYTHON (default python; 3.11 or newer), and TORCH_CUDA, LLAMA_CUDA,
rem FLASH_ATTN as for setup.sh (docs/setup.md).
setlocal
cd /d "%~dp0"

set MODELS=0
set CPU_ARG=
set DRY_ARG=
:args
if "%~1"=="" goto argsdone
if /i "%~1"=="--models" (set MODELS=1) else if /i "%~1"=="--cpu" (set CPU_ARG=--cpu) else if /i "%~1"=="--dry-run" (set DRY_ARG=--dry-run) else if /i "%~1"=="--help" (goto help) else (
  echo setup.bat: unknown option "%~1" ^(allowed: --models, --cpu, --dry-run, --help^)
  exit /b 2
)
shift
goto args
:help
for /f "tokens=1,* delims= " %%A in ('findstr /b /c:"rem " "%~f0"') do echo(%%B
exit /b 0
:argsdone

if "%PYTHON%"=="" set PYTHON=python
%PYTHON% -c "import sys; sys.exit(sys.version_info < (3, 11))" 2>nul
if errorlevel 1 (
  echo setup.bat: %PYTHON% is missing or older than Python 3.11: install Python 3.11 or newer, or set PYTHON
  exit /b 1
)
if not "%DRY_ARG%"=="" echo [setup] dry run: these are the commands a run would use; nothing is installed or changed

where ffmpeg >nul 2>nul || echo [setup] WARNING: ffmpeg is missing: install it ^(winget install Gyan.FFmpeg^) and put it on PATH.

if not exist .venv\Scripts\python.exe (
  echo [setup] $ %PYTHON% -m venv .venv
  if "%DRY_ARG%"=="" %PYTHON% -m venv .venv || exit /b 1
)

:: torch for this driver and card (checked on the GPU), then llama-cpp-python, the
:: requirements constrained to that torch, and flash-attn where it fits.
%PYTHON% -m engine.setup.helper install --python .venv\Scripts\python.exe %CPU_ARG% %DRY_ARG%
if errorlevel 1 exit /b %errorlevel%

if not exist .env (
  echo [setup] $ copy .env.example .env
  if "%DRY_ARG%"=="" copy .env.example .env >nul
)

if "%MODELS%"=="1" (
  echo [setup] $ .venv\Scripts\python.exe -m engine download
  if "%DRY_ARG%"=="" .venv\Scripts\python.exe -m engine download || echo [setup] WARNING: model download did not finish; everything else is set up
)

if not "%DRY_ARG%"=="" exit /b 0
echo [setup] done; put your DISCORD_TOKEN in .env. Device and tier (.venv\Scripts\python.exe -m engine doctor checks the whole machine):
.venv\Scripts\python.exe -m engine tiers
endlocal
