# The heredoc case written without heredocs, for buildah 1.28 (see Dockerfile).
FROM busybox
ARG NAME=world
RUN echo "hello $NAME" > /run-heredoc && mkdir /made
RUN echo 'literal $NAME' > /made/quoted
RUN echo tabs > /made/tabs
RUN printf 'name=%s\n' "$NAME" > /copied && chmod 0644 /copied
RUN mkdir /multi && echo first > /multi/one && echo second > /multi/two
RUN echo "cat $NAME" > /made/from-cat
