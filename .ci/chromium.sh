# Sourced by .ci/run: headless Chromium for the report's browser test, unpacked from Debian's packages (no root
# needed). Best effort: without it that one test is skipped, and CI goes on.
chromium_dir="$root/.ci/chromium"
if [ ! -x "$chromium_dir/chromium.sh" ]; then
  rm -rf "$chromium_dir" && mkdir -p "$chromium_dir/debs"
  if (cd "$chromium_dir/debs" && timeout 300 apt-get download -q chromium chromium-common libopenh264-7 \
        libdouble-conversion3 libharfbuzz-subset0 libpulse0 libflac12 libopus0 libxnvctrl0 libminizip1 libopenjp2-7 \
        libogg0 libsndfile1 libasyncns0 libvorbis0a libvorbisenc2 libmpg123-0 libmp3lame0 >/dev/null 2>&1); then
    for deb in "$chromium_dir"/debs/*.deb; do dpkg-deb -x "$deb" "$chromium_dir/root"; done
    rm -rf "$chromium_dir/debs"
    cat > "$chromium_dir/chromium.sh" <<WRAP
#!/bin/bash
export LD_LIBRARY_PATH=$chromium_dir/root/usr/lib/x86_64-linux-gnu:$chromium_dir/root/usr/lib/x86_64-linux-gnu/pulseaudio
exec $chromium_dir/root/usr/lib/chromium/chromium "\$@" 2>/dev/null
WRAP
    chmod +x "$chromium_dir/chromium.sh"
  fi
fi
if [ -x "$chromium_dir/chromium.sh" ] && "$chromium_dir/chromium.sh" --version >/dev/null 2>&1; then
  export BUDGETNAS_CHROMIUM="$chromium_dir/chromium.sh"
else
  echo "no headless Chromium: the report's browser test will be skipped"
fi
