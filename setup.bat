@echo off
rem Sets the project up in .venv on Windows: torch (CUDA 12.4, 12.1, 11.8, else CPU),
rem llama-cpp-python (CUDA when nvcc is found), the requirements, and a .env.
rem Mirrors setup.sh. Untested in CI (CI runs Linux); see docs/setup.md.
rem   setup.bat            everything but the model weights
rem   setup.bat --models   also download ACE-Step 1.5 weights
rem   setup.bat --cpu      CPU build of torch even if a GPU is present
setlocal enabledelayedexpansion
cd /d "%~dp0"

set MODELS=0
set FORCE_CPU=0
:args
if "%~1"=="" goto argsdone
if /i "%~1"=="--models" (set MODELS=1) else if /i "%~1"=="--cpu" (set FORCE_CPU=1) else (
  echo setup.bat: unknown option "%~1" ^(allowed: --models, --cpu^)
  exit /b 2
)
shift
goto args
:argsdone

where ffmpeg >nul 2>nul || echo [setup] WARNING: ffmpeg is missing: install it ^(winget install Gyan.FFmpeg^) and put it on PATH.

if not exist .venv\Scripts\python.exe (
  echo [setup] creating .venv
  python -m venv .venv || (echo setup.bat: Python 3.10+ is needed on PATH & exit /b 1)
)
set PY=.venv\Scripts\python.exe
set PIP=%PY% -m pip --disable-pip-version-check

%PY% -c "import torch" >nul 2>nul
if errorlevel 1 (
  set INSTALLED=0
  if "%FORCE_CPU%"=="0" (
    where nvidia-smi >nul 2>nul && (
      for %%C in (cu124 cu121 cu118) do (
        if "!INSTALLED!"=="0" (
          echo [setup] installing torch built for %%C
          %PIP% install -q torch --index-url https://download.pytorch.org/whl/%%C && set INSTALLED=1
        )
      )
    )
  )
  if "!INSTALLED!"=="0" (
    echo [setup] installing torch==2.13.0
    %PIP% install -q torch==2.13.0 || exit /b 1
  )
)
for /f "delims=" %%V in ('%PY% -c "import torch; print(torch.__version__)"') do set TORCH_VERSION=%%V
echo torch==%TORCH_VERSION%> "%TEMP%\radio-constraints.txt"

for /f "delims=" %%L in ('findstr /b "llama-cpp-python==" requirements.txt') do set LLAMA_SPEC=%%L
%PY% -c "import llama_cpp" >nul 2>nul
if errorlevel 1 (
  where nvcc >nul 2>nul && set CMAKE_ARGS=-DGGML_CUDA=on
  echo [setup] building %LLAMA_SPEC% ^(several minutes^)
  %PIP% install -q -c "%TEMP%\radio-constraints.txt" %LLAMA_SPEC% || exit /b 1
)

echo [setup] installing requirements ^(torch stays at %TORCH_VERSION%^)
%PIP% install -q -c "%TEMP%\radio-constraints.txt" -r requirements.txt -r requirements-dev.txt || exit /b 1

if not exist .env (
  copy .env.example .env >nul
  echo [setup] wrote .env from .env.example ^(put your DISCORD_TOKEN there^)
)

if "%MODELS%"=="1" (
  %PY% -m engine download || echo [setup] WARNING: model download did not finish; everything else is set up
)

%PY% -m engine tiers
endlocal
