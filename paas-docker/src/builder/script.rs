//! The shell script a build container runs, and the exit codes it reports.

/// Exit codes of the build script.
pub(super) const EXIT_NOT_DETECTED: i64 = 100;
pub(super) const EXIT_EXPLICIT_NOT_DETECTED: i64 = 102;

/// Runs in the build container as the stack user. Fixed text: no user string is interpolated;
/// buildpacks and the config arrive as files.
pub(super) const BUILD_SCRIPT: &str = r#"out=/tmp/paas-result
mkdir -p "$out" || exit 1
trap 'rm -rf /tmp/paas' EXIT
selected=
name=
for bp in /tmp/paas/buildpacks/*; do
  [ -d "$bp" ] || continue
  if [ -f "$bp/bin/detect" ] && name=$("$bp/bin/detect" /app); then
    selected=$bp
    break
  fi
done
if [ -z "$selected" ]; then
  if [ -f /tmp/paas/explicit ]; then
    echo " !     The buildpack from BUILDPACK_URL does not apply to this app (bin/detect failed)"
    exit 102
  fi
  exit 100
fi
name=$(printf '%s\n' "$name" | head -n 1)
[ -n "$name" ] || name=buildpack
printf '%s\n' "$name" > "$out/name"
echo "-----> $name app detected"
"$selected/bin/compile" /app /cache /tmp/paas/env || {
  code=$?
  echo " !     Buildpack compile failed (exit code $code)"
  exit 101
}
if [ -f "$selected/bin/release" ]; then
  "$selected/bin/release" /app > "$out/release.yml" || {
    echo " !     Buildpack bin/release failed"
    exit 103
  }
fi
echo "-----> Compiled slug"
exit 0
"#;
