# rwsplit as a container image: a static-enough release binary on Debian slim.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo.toml names the classification micro-benchmark; cargo wants it present.
COPY bench/classify.rs ./bench/classify.rs
RUN cargo build --release --locked && strip target/release/rwsplit

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 rwsplit
COPY --from=build /src/target/release/rwsplit /usr/local/bin/rwsplit
USER rwsplit
EXPOSE 6033 6034
ENTRYPOINT ["rwsplit"]
CMD ["serve", "-c", "/etc/rwsplit/proxy.yaml"]
