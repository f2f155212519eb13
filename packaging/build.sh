#!/usr/bin/env bash
# Build the deb and the rpm of hsflowd-py into dist/ (or $DIST): bash packaging/build.sh
#
# Both are built from one staged copy of the source tree, so they hold the same files:
# the deb with dpkg-buildpackage (debhelper + pybuild, packaging/debian/ copied in as debian/),
# the rpm with rpmbuild from packaging/rpm/hsflowd-py.spec. Needs Debian's debhelper, dh-python,
# python3-all, python3-setuptools, python3-packaging and rpm (scripts/debian-test-packages.txt).
# IMAGE=TAG also builds the container image from the deb (packaging/docker/Dockerfile) with
# `docker build` (DOCKER_HOST is honoured; BASE=IMAGE replaces debian:bookworm-slim).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dist=$(realpath -m "${DIST:-$root/dist}")

version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$root/hsflowd_py/__init__.py")
deb_version=$(sed -n '1s/^hsflowd-py (\([^-)]*\)-[^)]*).*/\1/p' "$root/packaging/debian/changelog")
rpm_version=$(sed -n 's/^Version: *//p' "$root/packaging/rpm/hsflowd-py.spec")
if [ "$version" != "$deb_version" ] || [ "$version" != "$rpm_version" ]; then
  echo "build.sh: versions disagree: hsflowd_py $version, debian/changelog $deb_version, spec $rpm_version" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src="$work/hsflowd-py-$version"
mkdir -p "$src" "$dist"
# What both packages are made of: the code, its metadata, the unit and the default config.
tar -C "$root" --exclude=__pycache__ -cf - \
  hsflowd_py modules setup.py pyproject.toml README.md hsflowd.conf.example systemd packaging/hsflowd.conf |
  tar -C "$src" -xf -

tar -C "$work" -czf "$work/hsflowd-py-$version.tar.gz" "hsflowd-py-$version"
mkdir -p "$work/rpm/SOURCES"
cp "$work/hsflowd-py-$version.tar.gz" "$work/rpm/SOURCES/"
# --nodeps: rpm's database on a Debian builder is empty; BuildRequires are for rpm distributions.
rpmbuild -bb --nodeps --define "_topdir $work/rpm" "$root/packaging/rpm/hsflowd-py.spec" >"$work/rpmbuild.log" 2>&1 || {
  tail -n 40 "$work/rpmbuild.log" >&2
  exit 1
}
cp "$work"/rpm/RPMS/noarch/*.rpm "$dist/"

cp -r "$root/packaging/debian" "$src/debian"
(cd "$src" && dpkg-buildpackage -us -uc -b >"$work/dpkg-buildpackage.log" 2>&1) || {
  tail -n 40 "$work/dpkg-buildpackage.log" >&2
  exit 1
}
deb=$(basename "$work"/hsflowd-py_"$version"-*_all.deb)
cp "$work/$deb" "$dist/"

if [ -n "${IMAGE:-}" ]; then
  # The context is a tar of the Dockerfile and the two files it copies. The RUN step uses the
  # host's network: no bridge needed, and apt reaches a mirror (when it must) as the host does.
  tar -C "$work" -cf - "$deb" -C "$root/packaging/docker" Dockerfile entrypoint.sh |
    docker build -q --force-rm --network host ${BASE:+--build-arg "BASE=$BASE"} -t "$IMAGE" - >/dev/null
  echo "image $IMAGE"
fi
(cd "$dist" && ls -1 "$deb" "$(basename "$work"/rpm/RPMS/noarch/*.rpm)")
