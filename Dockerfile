# rwsplit as a container image: the release binary as scripts/release builds
# it, optimized with a profile of rwsplit serving sysbench, on Debian slim.
#
# The Rust version is pinned: scripts/release merges the profile with the
# llvm-profdata of rustc's own LLVM release (llvm-22 for Rust 1.95, from
# Debian's security archive), and a newer Rust may need an LLVM bookworm
# does not package.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo.toml names the classification micro-benchmark; cargo wants it present.
COPY bench/classify.rs ./bench/classify.rs
# The training run: a MariaDB sandbox and sysbench, driven by the harness
# (scripts/release installs the rest; PyMySQL comes from Debian, as pip may
# not install into the system's Python).
RUN apt-get update && apt-get install -y --no-install-recommends python3-pymysql
COPY bench/harness ./bench/harness
COPY scripts/release scripts/lib.sh ./scripts/
RUN scripts/release && strip target/pgo/rwsplit

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 rwsplit
COPY --from=build /src/target/pgo/rwsplit /usr/local/bin/rwsplit
USER rwsplit
EXPOSE 6033 6034
ENTRYPOINT ["rwsplit"]
CMD ["serve", "-c", "/etc/rwsplit/proxy.yaml"]
