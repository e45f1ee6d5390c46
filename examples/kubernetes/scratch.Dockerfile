# kiln alone: the static binary and nothing else (no shell, no CA bundle, no /etc/passwd). Run
# it as root without privileges (the runtime's default capabilities, no CAP_SYS_ADMIN): kiln
# maps the container's ids into a user namespace of its own. TLS registries are verified
# against kiln's built-in Mozilla roots when the image has no CA bundle. The build context is
# a directory holding the static kiln binary (see README.md):
#   kiln build -t REGISTRY/tools/kiln:1-scratch --push -f examples/kubernetes/scratch.Dockerfile DIR
FROM scratch
COPY kiln /kiln
ENTRYPOINT ["/kiln"]
