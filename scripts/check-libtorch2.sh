#!/usr/bin/env bash
# Proves that every translation unit of vdm compiles against LibTorch 2.x: fetches Debian trixie's
# libtorch-dev 2.6 with a private apt configuration into $VDM_BUILD_DIR/libtorch2 (once, cached), then
# runs g++ -fsyntax-only on each TU of the build's compile_commands.json, in a CPU and a CUDA mode.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/check-libtorch2.sh [--mode cpu|cuda|both] [--jobs N] [--self-test | --no-self-test]
                                  [--full] [--no-pch] [--refresh]

Compiles (g++ -fsyntax-only) every translation unit of the configured build against Debian trixie's
LibTorch 2.6 headers; exits non-zero if one fails. The build must be configured first (cmake -S . -B
build); its compile_commands.json gives the files (CMake's unity batches included) and the flags.

  --mode M         cpu: the flags of the build; cuda: plus -DVDM_TORCH_HAS_CUDA=1 -DVDM_WITH_NCCL=1,
                   the CUDA toolkit and nccl.h include dirs and distributed/nccl_communicator.cpp
                   (as with an official CUDA LibTorch 2.x). Default: both (the CUDA mode is skipped,
                   with a warning, where the toolkit or nccl.h is missing; asked for, it fails).
  --jobs N         parallel compilers (default: nproc).
  --self-test      only the self-test: with the flags of a real file, TORCH_VERSION must be 2.6.*, a
                   trivial LibTorch snippet must compile and one using c10::variant (in 1.13, removed
                   in 2.x) must fail; that one must compile against the system's 1.13 if installed.
                   By default the self-test runs first (without the 1.13 part).
  --no-self-test   skip it.
  --full           the CUDA mode compiles every file again, even those whose CPU result stands for
                   it (flags equal but for -DVDM_TORCH_HAS_CUDA/-DVDM_WITH_NCCL, and no file they
                   read names either macro).
  --no-pch         no precompiled torch/torch.h (slower; every file parses the headers itself).
  --refresh        download and unpack the packages again.

Environment: VDM_BUILD_DIR (build), VDM_LIBTORCH2_DIR (<build>/libtorch2), VDM_LIBTORCH2_SUITE (trixie),
VDM_LIBTORCH2_PACKAGES (libtorch-dev), VDM_LIBTORCH2_EXPECT (2.6: the TORCH_VERSION prefix required),
VDM_LIBTORCH2_KEYRING (/usr/share/keyrings/debian-archive-keyring.gpg), CUDAToolkit_ROOT (/usr/local/cuda),
NCCL_ROOT / NCCL_HOME (where nccl.h is, if not in the toolkit), VDM_LIBTORCH2_CXX (the build's compiler).
EOF
}

cd "$(dirname "$0")/.."
SRC=$PWD
MODE=both
JOBS=$(nproc)
SELF_TEST=first
USE_PCH=1
REFRESH=0
FULL=0
MODE_GIVEN=0
while [ $# -gt 0 ]; do
  case $1 in
    --mode) MODE=${2:?--mode needs cpu, cuda or both}; MODE_GIVEN=1; shift 2 ;;
    --mode=*) MODE=${1#*=}; MODE_GIVEN=1; shift ;;
    --jobs|-j) JOBS=${2:?--jobs needs a number}; shift 2 ;;
    --jobs=*) JOBS=${1#*=}; shift ;;
    --self-test) SELF_TEST=only; shift ;;
    --no-self-test) SELF_TEST=no; shift ;;
    --no-pch) USE_PCH=0; shift ;;
    --full) FULL=1; shift ;;
    --refresh) REFRESH=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "check-libtorch2: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
case $MODE in cpu) MODES=(cpu) ;; cuda) MODES=(cuda) ;; both) MODES=(cpu cuda) ;;
  *) echo "check-libtorch2: --mode must be cpu, cuda or both, not '$MODE'" >&2; exit 2 ;; esac
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || { echo "check-libtorch2: --jobs needs a positive number" >&2; exit 2; }

BUILD=${VDM_BUILD_DIR:-build}
[[ $BUILD = /* ]] || BUILD=$SRC/$BUILD
DIR=${VDM_LIBTORCH2_DIR:-$BUILD/libtorch2}
[[ $DIR = /* ]] || DIR=$SRC/$DIR
SUITE=${VDM_LIBTORCH2_SUITE:-trixie}
read -r -a PACKAGES <<< "${VDM_LIBTORCH2_PACKAGES:-libtorch-dev}"
EXPECT=${VDM_LIBTORCH2_EXPECT:-2.6}
KEYRING=${VDM_LIBTORCH2_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
CUDA_ROOT=${CUDAToolkit_ROOT:-/usr/local/cuda}
ROOT=$DIR/root              # the unpacked packages: $ROOT/usr/include/{torch,ATen,c10,caffe2}
T2INC=$ROOT/usr/include
CCJSON=$BUILD/compile_commands.json
log() { echo "check-libtorch2: $*"; }
die() { echo "check-libtorch2: error: $*" >&2; exit 1; }

[ -f "$CCJSON" ] || die "no $CCJSON: configure the build first (cmake -S . -B ${VDM_BUILD_DIR:-build} -G Ninja)"
command -v python3 > /dev/null || die "python3 is needed (it reads compile_commands.json)"
mkdir -p "$DIR"
exec 9> "$DIR/.lock"
flock -n 9 || die "another check-libtorch2 is using $DIR"

# ---- 1. Debian's libtorch-dev 2.x, fetched with a private apt configuration ------------------
# The mirror is the one this machine's apt uses for its own release (deb822 .sources or one-line
# sources.list entries); nothing of the system's apt state is written: sources, lists, cache,
# dpkg status (empty, so nothing resolves against the installed system) and the update hooks
# (cleared: they would refresh system caches) all live under $DIR/apt.
find_mirror() {
  local codename
  codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
  python3 - "$codename" <<'PY'
import glob, re, sys
codename = sys.argv[1]
entries = []  # (uri, suites)
for path in sorted(glob.glob('/etc/apt/sources.list.d/*.sources')):
    try:
        text = open(path, encoding='utf-8', errors='replace').read()
    except OSError:
        continue
    for stanza in re.split(r'\n\s*\n', text):
        fields, key = {}, None
        for line in stanza.splitlines():
            if not line.strip() or line.lstrip().startswith('#'):
                continue
            if line[0] in ' \t' and key:
                fields[key] += ' ' + line.strip()
                continue
            if ':' in line:
                key, value = line.split(':', 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if 'deb' not in fields.get('types', '').split() or fields.get('enabled', 'yes').lower() == 'no':
            continue
        for uri in fields.get('uris', '').split():
            entries.append((uri, fields.get('suites', '').split()))
for path in ['/etc/apt/sources.list'] + sorted(glob.glob('/etc/apt/sources.list.d/*.list')):
    try:
        lines = open(path, encoding='utf-8', errors='replace').read().splitlines()
    except OSError:
        continue
    for line in lines:
        line = re.sub(r'\[[^]]*\]', ' ', line.split('#', 1)[0]).split()
        if len(line) >= 3 and line[0] == 'deb':
            entries.append((line[1], [line[2]]))
def pick(ok):
    for uri, suites in entries:
        if any(ok(s) for s in suites) and re.match(r'(https?|ftp|file|mirror\+\w+)://', uri):
            return uri
best = (codename and pick(lambda s: s == codename)) or pick(lambda s: 'security' not in s)
if best:
    print(best.rstrip('/'))
PY
}

fetch_libtorch2() {
  local stamp=$ROOT/.vdm-libtorch2.stamp
  if [ "$REFRESH" = 0 ] && [ -f "$stamp" ]; then
    log "LibTorch 2 headers cached in $ROOT ($(tr '\n' ' ' < "$stamp"))"
    return
  fi
  command -v apt-get > /dev/null && command -v dpkg > /dev/null || die "apt-get and dpkg are needed"
  local mirror
  mirror=$(find_mirror)
  [ -n "$mirror" ] || die "found no Debian mirror in /etc/apt/sources.list(.d): nothing to fetch $SUITE from"
  [ -r "$KEYRING" ] || die "no $KEYRING (package debian-archive-keyring; VDM_LIBTORCH2_KEYRING names another)"
  log "fetching ${PACKAGES[*]} from $mirror $SUITE (keys: $KEYRING)"
  local apt=$DIR/apt
  rm -rf "$apt" "$DIR/debs" "$ROOT" "$ROOT.tmp"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/sources.list.d" \
           "$apt/preferences.d" "$DIR/debs" "$ROOT.tmp"
  : > "$apt/status"
  # targets=Packages: no Translations, Contents or DEP-11 indexes, whatever the system enables.
  echo "deb [signed-by=$KEYRING targets=Packages] $mirror $SUITE main" > "$apt/sources.list"
  # APT_CONFIG is read first; the system's apt.conf.d (proxies, Acquire settings) next; then
  # Dir::Etc::main, this file, last of all: it wins over both.
  echo "Dir::Etc::main \"$apt/main.conf\";" > "$apt/apt.conf"
  {
    if [ -f /etc/apt/apt.conf ]; then echo '#include "/etc/apt/apt.conf";'; fi
    cat <<EOF
#clear APT::Update::Pre-Invoke;
#clear APT::Update::Post-Invoke;
#clear APT::Update::Post-Invoke-Success;
Dir::Etc::SourceList "$apt/sources.list";
Dir::Etc::SourceParts "$apt/sources.list.d";
Dir::Etc::Preferences "$apt/preferences";
Dir::Etc::PreferencesParts "$apt/preferences.d";
Dir::State "$apt";
Dir::State::Lists "$apt/lists";
Dir::State::status "$apt/status";
Dir::State::extended_states "$apt/extended_states";
Dir::Cache "$apt/cache";
Dir::Cache::archives "$apt/cache/archives";
Dir::Log "$apt";
APT::Get::List-Cleanup "false";
EOF
    # As root apt downloads as _apt, which may not reach a build folder: download as root then.
    if [ "$(id -u)" = 0 ]; then echo 'APT::Sandbox::User "root";'; fi
  } > "$apt/main.conf"
  export APT_CONFIG=$apt/apt.conf
  apt-get -q -o Acquire::Retries=3 update > "$apt/update.log" 2>&1 || {
    cat "$apt/update.log" >&2
    die "apt-get update of $SUITE from $mirror failed (offline? keys of $SUITE missing from $KEYRING?)"
  }
  if grep -E '^(W|E):' "$apt/update.log" >&2; then :; fi
  (cd "$DIR/debs" && apt-get -q -o Acquire::Retries=3 download "${PACKAGES[@]}") > "$apt/download.log" 2>&1 || {
    cat "$apt/download.log" >&2
    die "apt-get download ${PACKAGES[*]} from $SUITE failed"
  }
  unset APT_CONFIG
  local deb
  for deb in "$DIR"/debs/*.deb; do
    dpkg -x "$deb" "$ROOT.tmp"
    dpkg-deb --show --showformat='${Package}=${Version}\n' "$deb" >> "$ROOT.tmp/.vdm-libtorch2.stamp"
  done
  mv "$ROOT.tmp" "$ROOT"
  rm -rf "$apt/lists" "$apt/cache"  # 20 MB of indexes; the .deb files stay in $DIR/debs
  log "unpacked $(tr '\n' ' ' < "$stamp")into $ROOT"
}

fetch_libtorch2
[ -f "$T2INC/torch/csrc/api/include/torch/torch.h" ] || die "$T2INC has no torch/torch.h (try --refresh)"

# 2. Debian's CPU build does not ship the header CMake generates for c10_cuda.
CUDA_MACROS=$T2INC/c10/cuda/impl/cuda_cmake_macros.h
if [ ! -f "$CUDA_MACROS" ]; then
  mkdir -p "$(dirname "$CUDA_MACROS")"
  echo '#define C10_CUDA_BUILD_SHARED_LIBS  // stub by scripts/check-libtorch2.sh: not in the CPU package' > "$CUDA_MACROS"
fi

# ---- 3. Include paths from which the system's LibTorch 1.13 cannot be reached ----------------
# /usr/include holds Debian's 1.13 headers (torch/, ATen/, c10/, caffe2/). A 2.6 header missing
# from $T2INC would silently fall back to its 1.13 namesake, so the compiler gets -nostdinc and
# its own search list back, with /usr/include replaced by a folder of links to everything in it
# except those folders (and anything else the 2.6 packages provide).
CXX_DEFAULT=$(python3 -c '
import json, os, shlex, sys
for e in json.load(open(sys.argv[1])):
    args = e.get("arguments") or shlex.split(e["command"])
    while args and os.path.basename(args[0]) in ("ccache", "sccache", "distcc"):
        args = args[1:]
    print(args[0]); break' "$CCJSON")
CXX=${VDM_LIBTORCH2_CXX:-$CXX_DEFAULT}
SHADOW=$DIR/usr-include
rm -rf "$SHADOW.tmp" && mkdir -p "$SHADOW.tmp"
declare -A HIDE=([torch]=1 [ATen]=1 [c10]=1 [caffe2]=1)
for p in "$T2INC"/*; do HIDE[$(basename "$p")]=1; done
for p in /usr/include/*; do
  [ -n "${HIDE[$(basename "$p")]:-}" ] || ln -s "$p" "$SHADOW.tmp/"
done
rm -rf "$SHADOW" && mv "$SHADOW.tmp" "$SHADOW"
SYS_DIRS=$("$CXX" -xc++ -std=gnu++17 -E -v /dev/null 2>&1 > /dev/null \
  | sed -n '/^#include <...> search starts here:/,/^End of search list/{/^ /s/^ *//p}')
SYS_FLAGS=(-nostdinc)
while read -r d; do
  [ -z "$d" ] && continue
  d=$(readlink -m "$d")
  if [ "$d" = /usr/include ]; then SYS_FLAGS+=(-isystem "$T2INC" -isystem "$SHADOW"); else SYS_FLAGS+=(-isystem "$d"); fi
done <<< "$SYS_DIRS"
printf '%s\n' "${SYS_FLAGS[@]}" | grep -qx "$SHADOW" || die "/usr/include is not in $CXX's search list?"

# CUDA mode: the toolkit's include dir and nccl.h's (the build's NCCL_INCLUDE_DIR, or as CMake
# finds it: NCCL_ROOT, NCCL_HOME, the toolkit).
CUDA_INC=$CUDA_ROOT/include
NCCL_INC=$(sed -n 's/^NCCL_INCLUDE_DIR:PATH=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
[[ $NCCL_INC = *NOTFOUND* ]] && NCCL_INC=
if [ -z "$NCCL_INC" ]; then
  for d in ${NCCL_ROOT:+$NCCL_ROOT/include} ${NCCL_HOME:+$NCCL_HOME/include} "$CUDA_INC"; do
    [ -f "$d/nccl.h" ] && { NCCL_INC=$d; break; }
  done
fi
SKIPPED=""
if printf '%s\n' "${MODES[@]}" | grep -qx cuda; then
  if [ ! -f "$CUDA_INC/cuda_runtime_api.h" ]; then
    SKIPPED="no $CUDA_INC/cuda_runtime_api.h: set CUDAToolkit_ROOT"
  elif [ -z "$NCCL_INC" ] || [ ! -f "$NCCL_INC/nccl.h" ]; then
    SKIPPED="nccl.h not found: set NCCL_ROOT"
  fi
  if [ -n "$SKIPPED" ]; then
    [ "$MODE_GIVEN" = 0 ] || die "CUDA mode: $SKIPPED (or --mode cpu)"
    log "warning: the CUDA mode is SKIPPED ($SKIPPED)"
    MODES=(cpu)
  fi
fi

# ---- The translation units, one response file of compiler arguments each --------------------
# From compile_commands.json: the compiler launcher, -o/-c, dependency flags and CMake's
# precompiled header (-include .../cmake_pch.hxx, -Winvalid-pch) go; include dirs under
# /usr/include/{torch,ATen,c10,caffe2} move to the 2.6 tree. Unity batches stay batches.
make_jobs() {  # MODE OUTDIR PCH_INCLUDE
  python3 - "$CCJSON" "$1" "$2" "$SRC" "$T2INC" "$SHADOW" "$CUDA_INC" "$NCCL_INC" "${3:-}" \
    "${SYS_FLAGS[@]}" <<'PY'
import json, os, re, shlex, sys
ccjson, mode, out, src, t2inc, shadow, cuda_inc, nccl_inc, pch = sys.argv[1:10]
sys_flags = sys.argv[10:]
HIDDEN = ('torch', 'ATen', 'c10', 'caffe2')
LAUNCHERS = ('ccache', 'sccache', 'distcc')
PATH_OPTS = ('-I', '-isystem', '-iquote', '-idirafter')
DROP_WITH_ARG = ('-o', '-MF', '-MT', '-MQ')
DROP = ('-c', '-MD', '-MMD', '-MP', '-Winvalid-pch', '-fpch-preprocess')

def move(path):
    p = os.path.normpath(path)
    if p == '/usr/include':
        return shadow
    for h in HIDDEN:
        if p == '/usr/include/' + h or p.startswith('/usr/include/' + h + '/'):
            return t2inc + p[len('/usr/include'):]
    return path

def convert(entry):
    args = entry.get('arguments') or shlex.split(entry['command'])
    while os.path.basename(args[0]) in LAUNCHERS:
        args = args[1:]
    target = os.path.normpath(os.path.join(entry['directory'], entry['file']))
    res, i, had_pch, orig = [], 1, [False], []
    while i < len(args):
        a = args[i]
        if a in DROP_WITH_ARG:
            i += 2; continue
        if a in DROP:
            i += 1; continue
        if os.path.normpath(os.path.join(entry['directory'], a)) != target:
            orig.append(a)
        if a in PATH_OPTS + ('-include',) and i + 1 < len(args):
            orig.append(args[i + 1])
        if a == '-include' and i + 1 < len(args) and 'cmake_pch' in args[i + 1]:
            had_pch[0] = True; i += 2; continue
        if a in PATH_OPTS and i + 1 < len(args):
            res += [a, move(args[i + 1])]; i += 2; continue
        m = re.match(r'(-I|-isystem|-iquote|-idirafter)(.+)$', a)
        if m:
            res.append(m.group(1) + move(m.group(2))); i += 1; continue
        if os.path.normpath(os.path.join(entry['directory'], a)) == target:
            i += 1; continue
        res.append(a); i += 1
    return args[0], res, target, had_pch[0], orig

def sources_of(target):  # the .cpp files a TU stands for (a unity batch lists its members)
    if '/Unity/unity_' in target:
        text = open(target, encoding='utf-8', errors='replace').read()
        return re.findall(r'#include\s+"([^"]+\.(?:cpp|cc|cxx))"', text)
    return [target]

entries = [e for e in json.load(open(ccjson)) if not e['file'].endswith(('.hxx.cxx', '.hxx'))]
jobs, covered, core_flags = [], set(), None
for e in entries:
    cxx, flags, target, had_pch, orig = convert(e)
    members = sources_of(target)
    covered.update(os.path.normpath(m) for m in members)
    if core_flags is None and ('vdm_core.dir' in e.get('output', '') + ' '.join(flags) + target
                               or any('/distributed/' in m for m in members)):
        core_flags = flags
    jobs.append([cxx, flags, target, members, had_pch, orig])
nccl = os.path.join(src, 'distributed', 'nccl_communicator.cpp')
if mode == 'cuda' and nccl not in covered and os.path.exists(nccl):
    base = core_flags or jobs[0][1]
    jobs.append([jobs[0][0], list(base), nccl, [nccl], True, None])
    covered.add(nccl)

def has_define(flags, name):
    return any(f == '-D' + name or f.startswith('-D' + name + '=') for f in flags)

os.makedirs(out, exist_ok=True)
def q(a):  # gcc @file quoting: a backslash before anything unusual
    return ''.join(c if c.isalnum() or c in '/._-=+,:@%' else '\\' + c for c in a)
with open(os.path.join(out, 'jobs.tsv'), 'w') as jt:
    for n, (cxx, flags, target, members, had_pch, orig) in enumerate(jobs):
        flags = [f for f in flags]
        if mode == 'cuda':
            for name in ('VDM_TORCH_HAS_CUDA', 'VDM_WITH_NCCL'):
                if not has_define(flags, name):
                    flags.append('-D%s=1' % name)
            for d in (cuda_inc, nccl_inc):
                if d and d not in flags:
                    flags += ['-isystem', d]
        # The file's own -I/-isystem come first, then the compiler's (with /usr/include shadowed).
        flags = ['-fsyntax-only'] + flags + sys_flags
        # CMake's PCH (torch/torch.h) goes where the build puts it, and nowhere else.
        if pch and had_pch:
            flags += ['-Winvalid-pch', '-include', pch]
        rsp = os.path.join(out, '%03d.rsp' % n)
        with open(rsp, 'w') as f:
            f.write('\n'.join(q(a) for a in flags) + '\n')
        if orig is not None and mode == 'cpu':  # the build's own command (LibTorch 1.13), to compare
            with open(os.path.join(out, '%03d.orig.rsp' % n), 'w') as f:
                f.write('\n'.join(q(a) for a in ['-fsyntax-only'] + orig) + '\n')
        rel = [os.path.relpath(m, src) for m in members]
        name = os.path.relpath(target, src) if len(rel) == 1 and rel[0] == os.path.relpath(target, src) \
            else '%s [%s]' % (os.path.relpath(target, src), ' '.join(os.path.basename(r) for r in rel))
        jt.write('%03d\t%s\t%s\t%d\t%s\n' % (n, cxx, target, had_pch, name))

# Every .cpp of the library, launch/, tests/ and bench/ must be in some TU (a file CMake leaves
# out of this configuration, e.g. multirank tests without MPI, is reported, not compiled).
missing = []
for d in ('objectives', 'models', 'data', 'distributed', 'training', 'evaluation', 'launch', 'tests', 'bench'):
    for root, _, files in os.walk(os.path.join(src, d)):
        for f in files:
            p = os.path.normpath(os.path.join(root, f))
            if f.endswith('.cpp') and p not in covered:
                missing.append(os.path.relpath(p, src))
with open(os.path.join(out, 'uncovered.txt'), 'w') as f:
    f.write(''.join(m + '\n' for m in sorted(missing)))
PY
}

# ---- Compile one TU (run by xargs in parallel) ----------------------------------------------
# Leaves OUT/N.log, OUT/N.rc (0 ok), OUT/N.time and OUT/N.modal: the files it read (but those of
# the unpacked LibTorch 2.x) that name VDM_TORCH_HAS_CUDA or VDM_WITH_NCCL, which can make the CUDA
# mode differ. A TU that read a header of /usr/include's LibTorch 1.13 fails (the shadowed
# /usr/include rules that out; checked all the same).
compile_one() {  # OUT N CXX FILE
  local out=$1 n=$2 cxx=$3 file=$4 t0 rc=0
  t0=$(date +%s.%N)
  "$cxx" @"$out/$n.rsp" -MD -MF "$out/$n.d" "$file" > "$out/$n.log" 2>&1 || rc=$?
  if [ -f "$out/$n.d" ]; then
    if grep -qE '(^| )/usr/include/(torch|ATen|c10|caffe2)/' "$out/$n.d"; then
      grep -oE '/usr/include/(torch|ATen|c10|caffe2)/[^ ]+' "$out/$n.d" | head -5 \
        | sed 's/^/check-libtorch2: read a LibTorch 1.13 header: /' >> "$out/$n.log"
      rc=99
    fi
    if grep -q '\\ ' "$out/$n.d"; then
      echo "(a dependency with a space in its name)" > "$out/$n.modal"
    else
      sed -e '1s/^[^:]*://' -e 's/\\$//' "$out/$n.d" | tr ' ' '\n' | grep -v -e '^$' -e "^$VDM_L2_OURS/" | sort -u \
        | xargs -r grep -lE 'VDM_TORCH_HAS_CUDA|VDM_WITH_NCCL' > "$out/$n.modal" || true
    fi
    rm -f "$out/$n.d"
  else
    echo "(no dependency list)" > "$out/$n.modal"
  fi
  echo "$rc" > "$out/$n.rc"
  echo "$t0 $(date +%s.%N)" | awk '{printf "%.1f\n", $2 - $1}' > "$out/$n.time"
}
export -f compile_one
export VDM_L2_OURS=$DIR

# ---- A precompiled torch/torch.h (2.6) -------------------------------------------------------
# Parsing torch/torch.h is most of each file's time; the build precompiles it too (CMake's PCH,
# -include'd by the same TUs). Made from the flags of the first TU that uses it; GCC checks on
# every use that it fits the TU's flags (macros included: the CUDA mode's -D are not read by
# torch.h, so one serves both modes) and -Winvalid-pch reports one that does not (GCC then parses
# the header itself: slower, same result). Reused while the flags, packages and compiler match.
build_pch() {  # JOBDIR -> sets PCH to the header to -include (a .gch beside it), or leaves it empty
  local jobs=$1 pchdir=$DIR/pch/${MODES[0]} n="" cxx file haspch name key t0=$SECONDS
  mkdir -p "$pchdir"
  while IFS=$'\t' read -r n cxx file haspch name; do
    [ "$haspch" = 1 ] && break
    n=""
  done < "$jobs/jobs.tsv"
  [ -n "$n" ] || return 0  # the build uses no PCH (VDM_PCH=OFF): nor does this check
  printf '#include <torch/torch.h>\n' > "$pchdir/torch_pch.h"
  grep -vx -- '-fsyntax-only' "$jobs/$n.rsp" > "$pchdir/pch.rsp.new"
  key=$( (cat "$pchdir/pch.rsp.new" "$ROOT/.vdm-libtorch2.stamp" "$CUDA_MACROS"; "$cxx" --version) | sha1sum)
  if [ -f "$pchdir/torch_pch.h.gch" ] && [ "$(cat "$pchdir/key" 2>/dev/null)" = "$key" ]; then
    PCH=$pchdir/torch_pch.h; return
  fi
  rm -f "$pchdir/torch_pch.h.gch" "$pchdir/key"
  mv "$pchdir/pch.rsp.new" "$pchdir/pch.rsp"
  if "$cxx" @"$pchdir/pch.rsp" -x c++-header "$pchdir/torch_pch.h" -o "$pchdir/torch_pch.h.gch" \
       -MD -MF "$pchdir/pch.d" > "$pchdir/pch.log" 2>&1 &&
     ! grep -E '(^| )/usr/include/(torch|ATen|c10|caffe2)/' "$pchdir/pch.d" >> "$pchdir/pch.log"; then
    echo "$key" > "$pchdir/key"
    log "precompiled torch/torch.h (2.x) in $((SECONDS - t0)) s"
    PCH=$pchdir/torch_pch.h
  else
    log "could not precompile torch/torch.h (see $pchdir/pch.log); going on without"
    rm -f "$pchdir/torch_pch.h.gch"
  fi
}

# ---- 4. Self-test: the check must be able to fail --------------------------------------------
# With the flags (and precompiled header) of a real TU: TORCH_VERSION must be $EXPECT.*, a plain
# LibTorch file must compile, and one using c10::variant (c10/util/variant.h: in LibTorch 1.13,
# gone from 2.x, where std::variant took its place) must fail, on that. With --self-test the
# c10::variant file must also compile against the system's 1.13, when it is installed.
self_test() {  # JOBDIR
  local jobs=$1 st=$DIR/self-test t0=$SECONDS n cxx file haspch name
  rm -rf "$st" && mkdir -p "$st"
  IFS=$'\t' read -r n cxx file haspch name < <(awk -F'\t' '$4 == 1' "$jobs/jobs.tsv"; head -1 "$jobs/jobs.tsv")
  local rsp=$jobs/$n.rsp
  cat > "$st/ok.cpp" <<'EOF2'
#include <torch/torch.h>
#include <torch/version.h>
static_assert(TORCH_VERSION_MAJOR >= 2, "not LibTorch 2.x");
float f() { return torch::ones({2, 3}).sum().item<float>(); }
EOF2
  cat > "$st/removed.cpp" <<'EOF2'
#include <torch/torch.h>
int f() { c10::variant<int, float> v = 1; return c10::get<int>(v); }
EOF2
  # TORCH_VERSION as the TUs see it (the preprocessor, without the precompiled header).
  printf '#include <torch/version.h>\nvdm_torch_version=TORCH_VERSION\n' > "$st/version.cpp"
  sed -e 's/^-fsyntax-only$/-E/' -e '/^-include$/,+1d' -e '/^-Winvalid-pch$/d' "$rsp" > "$st/E.rsp"
  local version
  version=$("$cxx" @"$st/E.rsp" -P "$st/version.cpp" | sed -n 's/^vdm_torch_version= *"\(.*\)"$/\1/p')
  log "TORCH_VERSION (torch/version.h as the files see it): ${version:-?}"
  [[ $version == "$EXPECT"* ]] || die "self-test: torch/version.h says '${version}', wanted $EXPECT.*"
  local pids=() rc_ok=0 rc_removed=0 rc_old=0 old=0
  "$cxx" @"$rsp" "$st/ok.cpp" > "$st/ok.log" 2>&1 & pids+=($!)
  "$cxx" @"$rsp" "$st/removed.cpp" > "$st/removed.log" 2>&1 & pids+=($!)
  if [ "$SELF_TEST" = only ] && [ -f /usr/include/torch/csrc/api/include/torch/torch.h ]; then
    old=1
    "$cxx" -std=gnu++17 -fsyntax-only -D_GLIBCXX_USE_CXX11_ABI=1 -isystem /usr/include/torch/csrc/api/include \
      "$st/removed.cpp" > "$st/removed-1.13.log" 2>&1 || rc_old=$?
  fi
  wait "${pids[0]}" || rc_ok=$?
  wait "${pids[1]}" || rc_removed=$?
  local bad=0
  if [ "$rc_ok" != 0 ]; then
    echo "self-test: a plain LibTorch file does not compile against $T2INC:"; head -20 "$st/ok.log"; bad=1
  fi
  if [ "$rc_removed" = 0 ]; then
    echo "self-test: a file using c10::variant (removed in 2.x) compiled: these are not 2.x headers"; bad=1
  elif ! grep -q "variant.* is not a member of .*c10" "$st/removed.log"; then
    echo "self-test: the c10::variant file failed, but not on c10::variant:"; head -20 "$st/removed.log"; bad=1
  fi
  if [ "$old" = 1 ] && [ "$rc_old" != 0 ]; then
    echo "self-test: the c10::variant file does not compile against LibTorch 1.13 either:"
    head -20 "$st/removed-1.13.log"; bad=1
  fi
  [ "$bad" = 0 ] || die "self-test failed (logs in $st)"
  log "self-test passed in $((SECONDS - t0)) s: a LibTorch file compiles against $version; one using" \
      "c10::variant fails ($(grep -m1 -o 'error: .*variant.* is not a member of [^;]*' "$st/removed.log"))$(
      [ "$old" = 1 ] && echo " and compiles against the system's LibTorch 1.13")"
}

# ---- 5. The files, per mode ------------------------------------------------------------------
prepare_jobs() {  # PCH_INCLUDE
  local m
  rm -rf "$DIR/out"  # results are never carried from one run to the next
  for m in "${MODES[@]}"; do
    mkdir -p "$DIR/out/$m"
    make_jobs "$m" "$DIR/out/$m" "${1:-}"
  done
}
prepare_jobs ""
PCH=""
if [ "$USE_PCH" = 1 ]; then
  build_pch "$DIR/out/${MODES[0]}"
  [ -z "$PCH" ] || prepare_jobs "$PCH"
fi
if [ "$SELF_TEST" != no ]; then
  self_test "$DIR/out/${MODES[0]}"
  [ "$SELF_TEST" = only ] && exit 0
fi

# The CUDA mode after the CPU mode: a TU whose flags differ only by -DVDM_TORCH_HAS_CUDA=1
# -DVDM_WITH_NCCL=1 and which read no project file naming either macro preprocesses to the same
# text in both modes, so its CPU result stands (--full compiles it again anyway).
reusable() {  # N(cuda) FILE -> prints the cpu job number when the cpu result stands for it
  local n=$1 file=$2 c
  [ "$FULL" = 0 ] && [ "$CPU_DONE" = 1 ] || return 0
  c=$(awk -F'\t' -v f="$file" '$3 == f { print $1; exit }' "$DIR/out/cpu/jobs.tsv")
  [ -n "$c" ] && [ "$(cat "$DIR/out/cpu/$c.rc" 2>/dev/null)" = 0 ] && [ -f "$DIR/out/cpu/$c.modal" ] \
    && [ ! -s "$DIR/out/cpu/$c.modal" ] || return 0
  grep -vx -e '-DVDM_TORCH_HAS_CUDA=1' -e '-DVDM_WITH_NCCL=1' "$DIR/out/cuda/$n.rsp" \
    | cmp -s - <(grep -vx -e '-DVDM_TORCH_HAS_CUDA=1' -e '-DVDM_WITH_NCCL=1' "$DIR/out/cpu/$c.rsp") || return 0
  echo "$c"
}

run_mode() {  # MODE: adds a line to SUMMARY and the failures to FAILED
  local mode=$1 out=$DIR/out/$1 t0=$SECONDS
  if [ -s "$out/uncovered.txt" ]; then
    log "$mode: $(wc -l < "$out/uncovered.txt") source file(s) in no TU of this build's compile_commands.json" \
        "(not compiled): $(head -8 "$out/uncovered.txt" | tr '\n' ' ')$([ "$(wc -l < "$out/uncovered.txt")" -le 8 ] || echo ...)"
  fi
  local n cxx file haspch name c total reused=0
  total=$(wc -l < "$out/jobs.tsv")
  : > "$out/todo.tsv"
  while IFS=$'\t' read -r n cxx file haspch name; do
    c=""
    [ "$mode" = cuda ] && c=$(reusable "$n" "$file")
    if [ -n "$c" ]; then
      cp "$DIR/out/cpu/$c.rc" "$out/$n.rc"; echo 0 > "$out/$n.time"
      echo "(the CPU mode's result: same flags but for VDM_TORCH_HAS_CUDA/VDM_WITH_NCCL, which no file of it reads)" > "$out/$n.log"
      reused=$((reused + 1))
    else
      printf '%s\t%s\t%s\t%s\t%s\n' "$n" "$cxx" "$file" "$haspch" "$name" >> "$out/todo.tsv"
    fi
  done < "$out/jobs.tsv"
  log "$mode: compiling $((total - reused)) translation units with $JOBS jobs${PCH:+ (precompiled torch/torch.h)}$(
    [ "$reused" = 0 ] || echo "; $reused more take the CPU mode's result")"
  # Longest first (times of the last run), so the cores finish together.
  local times=$DIR/times.$mode
  awk -F'\t' -v t="$times" 'BEGIN { while ((getline l < t) > 0) { split(l, a, "\t"); s[a[1]] = a[2] } }
       { print (($3 in s) ? s[$3] : 1000) "\t" $0 }' "$out/todo.tsv" | sort -t$'\t' -k1,1 -gr | cut -f2- \
    | awk -F'\t' -v o="$out" '{ print o; print $1; print $2; print $3 }' \
    | xargs -d '\n' -r -n 4 -P "$JOBS" bash -c 'compile_one "$@"' _ || true
  # A file that fails here is compiled as the build compiles it (LibTorch 1.13, -fsyntax-only),
  # to tell a 2.x incompatibility from code that does not compile at all (VDM_LIBTORCH2_COMPARE=0:
  # not). The CUDA mode has no such twin: Debian's 1.13 has no CUDA.
  if [ "$mode" = cpu ] && [ "${VDM_LIBTORCH2_COMPARE:-1}" != 0 ]; then
    while IFS=$'\t' read -r n cxx file haspch name; do
      [ "$(cat "$out/$n.rc" 2>/dev/null)" = 0 ] || [ ! -f "$out/$n.orig.rsp" ] || printf '%s\n' "$n" "$cxx" "$file"
    done < "$out/jobs.tsv" \
      | xargs -d '\n' -r -n 3 -P "$JOBS" bash -c \
          'o=$0; "$2" @"$o/$1.orig.rsp" "$3" > "$o/$1.orig.log" 2>&1; echo $? > "$o/$1.orig.rc"' "$out" || true
  fi
  local rc failed=0 secs badpch=0 why
  while IFS=$'\t' read -r n cxx file haspch name; do
    rc=$(cat "$out/$n.rc" 2>/dev/null || echo 98)
    secs=$(cat "$out/$n.time" 2>/dev/null || echo 0)
    [ "$secs" = 0 ] || printf '%s\t%s\n' "$file" "$secs" >> "$times.new"
    grep -q 'Winvalid-pch' "$out/$n.log" && badpch=$((badpch + 1))
    if [ "$rc" != 0 ]; then
      failed=$((failed + 1))
      why=""
      if [ -f "$out/$n.orig.rc" ]; then
        if [ "$(cat "$out/$n.orig.rc")" = 0 ]; then why=" -- compiles with LibTorch 1.13: a 2.x incompatibility"
        else why=" -- fails with LibTorch 1.13 and the build's flags too: not (only) a 2.x problem"; fi
      fi
      echo "---- $mode: FAILED: $name$why (full log: $out/$n.log)"
      grep -E ': (fatal )?error:|LibTorch 1.13 header' "$out/$n.log" | head -n "${VDM_LIBTORCH2_ERRORS:-15}" \
        || head -15 "$out/$n.log"
    fi
  done < "$out/jobs.tsv"
  [ ! -f "$times.new" ] || mv "$times.new" "$times"
  [ "$badpch" = 0 ] || log "$mode: the precompiled header did not fit $badpch file(s) (-Winvalid-pch): they parsed torch/torch.h themselves"
  SUMMARY+=("$(printf '%-4s: %3d files%s, %d failed, %d s' "$mode" "$total" "$(
    [ "$mode" != cuda ] || printf ' (%d compiled, %d as in cpu)' "$((total - reused))" "$reused")" \
    "$failed" "$((SECONDS - t0))")")
  FAILED=$((FAILED + failed))
}

SUMMARY=()
FAILED=0
CPU_DONE=0
for m in "${MODES[@]}"; do
  run_mode "$m"
  [ "$m" != cpu ] || CPU_DONE=1
done
[ -z "$SKIPPED" ] || SUMMARY+=("cuda: SKIPPED ($SKIPPED)")
log "LibTorch $EXPECT (Debian $SUITE headers in $T2INC):"
printf '  %s\n' "${SUMMARY[@]}"
if [ "$FAILED" != 0 ]; then
  log "$FAILED translation unit(s) do not compile against LibTorch $EXPECT"
  exit 1
fi
log "every translation unit compiles against LibTorch $EXPECT"
