#!/usr/bin/env bash
# Proves that every translation unit of vdm compiles against LibTorch 2.x: fetches Debian trixie's
# libtorch-dev 2.6 with a private apt configuration into $VDM_BUILD_DIR/libtorch2 (once, cached), then
# runs g++ -fsyntax-only on each TU of the build's compile_commands.json, in a CPU and a CUDA mode.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/check-libtorch2.sh [--mode cpu|cuda|both] [--jobs N] [--self-test | --no-self-test]
                                  [--no-pch] [--refresh]

Compiles (g++ -fsyntax-only) every translation unit of the configured build against Debian trixie's
LibTorch 2.6 headers; exits non-zero if one fails. The build must be configured first (cmake -S . -B
build); its compile_commands.json gives the files (CMake's unity batches included) and the flags.

  --mode M         cpu: the flags of the build; cuda: plus -DVDM_TORCH_HAS_CUDA=1 -DVDM_WITH_NCCL=1,
                   the CUDA toolkit and nccl.h include dirs and distributed/nccl_communicator.cpp
                   (as with an official CUDA LibTorch 2.x). Default: both.
  --jobs N         parallel compilers (default: nproc).
  --self-test      only the self-test: a trivial LibTorch snippet must compile against the 2.6 headers,
                   and one using c10::variant (in 1.13, removed in 2.x) must fail there.
                   By default it runs first, before the files.
  --no-self-test   skip it.
  --no-pch         no precompiled torch/torch.h (slower; every file parses the headers itself).
  --refresh        download and unpack the packages again.

Environment: VDM_BUILD_DIR (build), VDM_LIBTORCH2_DIR (<build>/libtorch2), VDM_LIBTORCH2_SUITE (trixie),
VDM_LIBTORCH2_PACKAGES (libtorch-dev), VDM_LIBTORCH2_EXPECT (2.6: the TORCH_VERSION prefix required),
VDM_LIBTORCH2_KEYRING (/usr/share/keyrings/debian-archive-keyring.gpg), CUDAToolkit_ROOT (/usr/local/cuda),
NCCL_ROOT / NCCL_HOME (where nccl.h is, if not in the toolkit).
EOF
}

cd "$(dirname "$0")/.."
SRC=$PWD
MODE=both
JOBS=$(nproc)
SELF_TEST=first
USE_PCH=1
REFRESH=0
while [ $# -gt 0 ]; do
  case $1 in
    --mode) MODE=${2:?--mode needs cpu, cuda or both}; shift 2 ;;
    --mode=*) MODE=${1#*=}; shift ;;
    --jobs|-j) JOBS=${2:?--jobs needs a number}; shift 2 ;;
    --jobs=*) JOBS=${1#*=}; shift ;;
    --self-test) SELF_TEST=only; shift ;;
    --no-self-test) SELF_TEST=no; shift ;;
    --no-pch) USE_PCH=0; shift ;;
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
    [ -f /etc/apt/apt.conf ] && echo '#include "/etc/apt/apt.conf";'
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
    [ "$(id -u)" = 0 ] && echo 'APT::Sandbox::User "root";'
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
if printf '%s\n' "${MODES[@]}" | grep -qx cuda; then
  [ -f "$CUDA_INC/cuda_runtime_api.h" ] || die "CUDA mode: no $CUDA_INC/cuda_runtime_api.h (set CUDAToolkit_ROOT, or --mode cpu)"
  [ -n "$NCCL_INC" ] && [ -f "$NCCL_INC/nccl.h" ] || die "CUDA mode: nccl.h not found (set NCCL_ROOT, or --mode cpu)"
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
    res, i, had_pch = [], 1, [False]
    while i < len(args):
        a = args[i]
        if a in DROP_WITH_ARG:
            i += 2; continue
        if a in DROP:
            i += 1; continue
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
    return args[0], res, target, had_pch[0]

def sources_of(target):  # the .cpp files a TU stands for (a unity batch lists its members)
    if '/Unity/unity_' in target:
        text = open(target, encoding='utf-8', errors='replace').read()
        return re.findall(r'#include\s+"([^"]+\.(?:cpp|cc|cxx))"', text)
    return [target]

entries = [e for e in json.load(open(ccjson)) if not e['file'].endswith(('.hxx.cxx', '.hxx'))]
jobs, covered, core_flags = [], set(), None
for e in entries:
    cxx, flags, target, had_pch = convert(e)
    members = sources_of(target)
    covered.update(os.path.normpath(m) for m in members)
    if core_flags is None and ('vdm_core.dir' in e.get('output', '') + ' '.join(flags) + target
                               or any('/distributed/' in m for m in members)):
        core_flags = flags
    jobs.append([cxx, flags, target, members, had_pch])
nccl = os.path.join(src, 'distributed', 'nccl_communicator.cpp')
if mode == 'cuda' and nccl not in covered and os.path.exists(nccl):
    base = core_flags or jobs[0][1]
    jobs.append([jobs[0][0], list(base), nccl, [nccl], True])
    covered.add(nccl)

def has_define(flags, name):
    return any(f == '-D' + name or f.startswith('-D' + name + '=') for f in flags)

os.makedirs(out, exist_ok=True)
def q(a):  # gcc @file quoting: a backslash before anything unusual
    return ''.join(c if c.isalnum() or c in '/._-=+,:@%' else '\\' + c for c in a)
with open(os.path.join(out, 'jobs.tsv'), 'w') as jt:
    for n, (cxx, flags, target, members, had_pch) in enumerate(jobs):
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
# Leaves OUT/N.log, OUT/N.rc (0 ok) and OUT/N.time; a TU that read a header of /usr/include's
# LibTorch 1.13 fails (cannot happen with the shadowed /usr/include, but is checked anyway).
compile_one() {  # OUT N CXX FILE
  local out=$1 n=$2 cxx=$3 file=$4 t0 rc=0
  t0=$(date +%s.%N)
  "$cxx" @"$out/$n.rsp" -MD -MF "$out/$n.d" "$file" > "$out/$n.log" 2>&1 || rc=$?
  if [ -f "$out/$n.d" ]; then
    if grep -qE '(^| )/usr/include/(torch|ATen|c10|caffe2)/' "$out/$n.d"; then
      { echo "check-libtorch2: this TU read LibTorch 1.13 headers from /usr/include:"
        grep -oE '/usr/include/(torch|ATen|c10|caffe2)/[^ ]+' "$out/$n.d" | head -5; } >> "$out/$n.log"
      rc=99
    fi
    rm -f "$out/$n.d"
  fi
  echo "$rc" > "$out/$n.rc"
  echo "$t0 $(date +%s.%N)" | awk '{printf "%.1f\n", $2 - $1}' > "$out/$n.time"
}
export -f compile_one

# ---- A precompiled torch/torch.h (2.6) per mode ----------------------------------------------
# Parsing torch/torch.h costs most of each file's time; CMake's own PCH does the same for the
# build. It is made from the flags of the first LibTorch TU and used by every TU whose flags agree
# (-Winvalid-pch says so otherwise; then GCC reads the text header, slower but still correct).
build_pch() {  # MODE JOBDIR -> prints the -include path, or nothing
  local mode=$1 jobs=$2 pchdir=$DIR/pch/$1 n="" cxx file haspch name
  mkdir -p "$pchdir"
  while IFS=$'\t' read -r n cxx file haspch name; do
    [ "$haspch" = 1 ] && break
    n=""
  done < "$jobs/jobs.tsv"
  [ -n "$n" ] || return 0  # the build uses no PCH (VDM_PCH=OFF): nor does this check
  printf '#include <torch/torch.h>\n' > "$pchdir/torch_pch.h"
  local key
  key=$( (grep -v -- '^-D\|-fsyntax-only' "$jobs/$n.rsp" | sort; grep -- '^-D' "$jobs/$n.rsp" | sort
          cat "$ROOT/.vdm-libtorch2.stamp"; "$cxx" --version | head -1) | sha1sum | cut -c1-16)
  if [ -f "$pchdir/torch_pch.h.gch" ] && [ "$(cat "$pchdir/key" 2>/dev/null)" = "$key" ]; then
    echo "$pchdir/torch_pch.h"; return
  fi
  rm -f "$pchdir/torch_pch.h.gch"
  local t0=$SECONDS
  if grep -v -- '^-fsyntax-only$' "$jobs/$n.rsp" > "$pchdir/pch.rsp" &&
     "$cxx" @"$pchdir/pch.rsp" -x c++-header "$pchdir/torch_pch.h" -o "$pchdir/torch_pch.h.gch" \
       > "$pchdir/pch.log" 2>&1; then
    echo "$key" > "$pchdir/key"
    log "$mode: precompiled torch/torch.h 2.x in $((SECONDS - t0)) s" >&2
    echo "$pchdir/torch_pch.h"
  else
    log "$mode: could not precompile torch/torch.h (see $pchdir/pch.log); going on without" >&2
    rm -f "$pchdir/torch_pch.h.gch"
  fi
}

# ---- 4. Self-test: the check must be able to fail --------------------------------------------
# c10::variant (c10/util/variant.h) is in LibTorch 1.13 and gone from 2.x (std::variant took its
# place): a file using it must fail here, with that error, while a plain LibTorch file passes.
self_test() {
  local st=$DIR/self-test t0=$SECONDS
  rm -rf "$st" && mkdir -p "$st"
  local flags=(-std=gnu++17 -fsyntax-only -D_GLIBCXX_USE_CXX11_ABI=1 -isystem "$T2INC/torch/csrc/api/include"
               "${SYS_FLAGS[@]}")
  cat > "$st/ok.cpp" <<'EOF'
#include <torch/torch.h>
#include <torch/version.h>
static_assert(TORCH_VERSION_MAJOR >= 2, "not LibTorch 2.x");
float f() { return torch::ones({2, 3}).sum().item<float>(); }
const char* vdm_torch_version = TORCH_VERSION;
EOF
  cat > "$st/removed.cpp" <<'EOF'
#include <torch/torch.h>
int f() { c10::variant<int, float> v = 1; return c10::get<int>(v); }
EOF
  # TORCH_VERSION as the TUs will see it (the preprocessor alone: a second).
  local version
  version=$("$CXX" "${flags[@]/-fsyntax-only/-E}" -P -include torch/version.h -x c++ - <<< 'vdm_torch_version=TORCH_VERSION' \
    | sed -n 's/^vdm_torch_version= *"\(.*\)"$/\1/p')
  log "TORCH_VERSION in $T2INC: ${version:-?}"
  [[ $version == "$EXPECT"* ]] || die "self-test: torch/version.h says '${version}', wanted $EXPECT.*"
  local pids=() rc_ok=0 rc_removed=0 rc_old=0 old=0
  "$CXX" "${flags[@]}" "$st/ok.cpp" > "$st/ok.log" 2>&1 & pids+=($!)
  "$CXX" "${flags[@]}" "$st/removed.cpp" > "$st/removed.log" 2>&1 & pids+=($!)
  wait "${pids[0]}" || rc_ok=$?
  wait "${pids[1]}" || rc_removed=$?
  # The same file against the system's 1.13 headers (when installed) must compile: it is the
  # removal that fails it, not the snippet.
  if [ -f /usr/include/torch/csrc/api/include/torch/torch.h ]; then
    old=1
    "$CXX" -std=gnu++17 -fsyntax-only -D_GLIBCXX_USE_CXX11_ABI=1 -isystem /usr/include/torch/csrc/api/include \
      "$st/removed.cpp" > "$st/removed-1.13.log" 2>&1 || rc_old=$?
  fi
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
      "c10::variant fails there (error: $(grep -m1 -o 'variant.* is not a member of [^;]*' "$st/removed.log"))$(
      [ "$old" = 1 ] && echo " and compiles against the system's LibTorch 1.13")"
}

if [ "$SELF_TEST" != no ]; then
  self_test
  [ "$SELF_TEST" = only ] && exit 0
fi

# ---- 5. The files, per mode ------------------------------------------------------------------
run_mode() {  # MODE -> returns the number of failing TUs in FAILED
  local mode=$1 out=$DIR/out/$1 t0=$SECONDS pch=""
  rm -rf "$out" && mkdir -p "$out"
  make_jobs "$mode" "$out" ""
  if [ "$USE_PCH" = 1 ]; then
    pch=$(build_pch "$mode" "$out")
    [ -n "$pch" ] && { rm -rf "$out" && mkdir -p "$out" && make_jobs "$mode" "$out" "$pch"; }
  fi
  if [ -s "$out/uncovered.txt" ]; then
    log "$mode: not in this build's compile_commands.json (so not compiled): $(tr '\n' ' ' < "$out/uncovered.txt")"
  fi
  local total
  total=$(wc -l < "$out/jobs.tsv")
  log "$mode: compiling $total translation units with $JOBS jobs${pch:+ (precompiled torch/torch.h)}"
  # Longest first (times of the last run), so the two cores end together.
  local order=$DIR/times.$mode
  awk -F'\t' -v t="$order" 'BEGIN { while ((getline l < t) > 0) { split(l, a, "\t"); s[a[1]] = a[2] } }
       { print (($3 in s) ? s[$3] : 1000) "\t" $0 }' "$out/jobs.tsv" | sort -t$'\t' -k1,1 -gr | cut -f2- \
    | awk -F'\t' -v o="$out" '{ print o; print $1; print $2; print $3 }' \
    | xargs -d '\n' -n 4 -P "$JOBS" bash -c 'compile_one "$@"' _ || true
  local n cxx file haspch name rc failed=0 secs
  : > "$order.new"
  while IFS=$'\t' read -r n cxx file haspch name; do
    rc=$(cat "$out/$n.rc" 2>/dev/null || echo 98)
    secs=$(cat "$out/$n.time" 2>/dev/null || echo 0)
    printf '%s\t%s\n' "$file" "$secs" >> "$order.new"
    if [ "$rc" != 0 ]; then
      failed=$((failed + 1))
      echo "---- $mode: FAILED: $name ($secs s; full log: $out/$n.log)"
      grep -E ': (fatal )?error:|LibTorch 1.13|^/usr/include/' "$out/$n.log" | head -n "${VDM_LIBTORCH2_ERRORS:-15}" || head -15 "$out/$n.log"
    fi
  done < "$out/jobs.tsv"
  mv "$order.new" "$order"
  SUMMARY+=("$(printf '%-4s: %3d files, %d failed, %d s' "$mode" "$total" "$failed" "$((SECONDS - t0))")")
  FAILED=$((FAILED + failed))
}

SUMMARY=()
FAILED=0
for m in "${MODES[@]}"; do run_mode "$m"; done
log "LibTorch $EXPECT (Debian $SUITE headers in $T2INC):"
printf '  %s\n' "${SUMMARY[@]}"
if [ "$FAILED" != 0 ]; then
  log "$FAILED translation unit(s) do not compile against LibTorch $EXPECT"
  exit 1
fi
log "every translation unit compiles against LibTorch $EXPECT"
