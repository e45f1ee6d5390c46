# The parent of the onbuild case: its triggers run when a child is built FROM it.
FROM busybox
ENV where=/onbuild
ONBUILD RUN mkdir -p $where && echo ran > $where/run
ONBUILD COPY file /onbuild-copied
ONBUILD WORKDIR /onbuild-workdir
ONBUILD ENV triggered=yes
LABEL parent=yes
