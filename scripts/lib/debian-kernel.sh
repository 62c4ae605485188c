# Shared by the scripts that fetch a Debian kernel package (the harness's L1
# kernel, the appliance's host kernel). Source it; it defines two functions.

# Prints the candidate version of meta package $1, or fails naming it.
debian_kernel_version() {
    local meta=$1 version
    version=$(apt-cache policy "$meta" | sed -n 's/^ *Candidate: *//p')
    if [ -z "$version" ] || [ "$version" = "(none)" ]; then
        echo "apt knows no $meta; run 'apt-get update'" >&2
        return 1
    fi
    echo "$version"
}

# Downloads meta package $1 at version $2, then the versioned image package
# it depends on, and unpacks that into directory $3. Prints the kernel
# release (the name of its lib/modules directory).
debian_kernel_unpack() {
    local meta=$1 version=$2 dest=$3 image_pkg
    (
        cd "$dest"
        apt-get download "$meta=$version" >&2 2>/dev/null || apt-get download "$meta" >&2
        # The meta package names the versioned image package it pulls in.
        image_pkg=$(dpkg-deb -f ./"$meta"_*.deb Depends | tr ',' '\n' |
            sed -n 's/^ *\(linux-image-[^ ]*\).*/\1/p' | head -n1)
        apt-get download "$image_pkg" >&2
        dpkg-deb -x ./"$image_pkg"_*.deb root
        ls root/lib/modules
    )
}
