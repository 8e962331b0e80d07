# One image per function: docker build --build-arg FUNCTION=list-eligibility -t IMAGE .
# FUNCTION is list-eligibility, request-approval, approve, mailer, sweeper or chat.

FROM rust:1.95-slim-bookworm AS build
ARG FUNCTION
RUN test -n "$FUNCTION" || (echo "--build-arg FUNCTION=<name> is required" >&2; exit 1)
WORKDIR /src
COPY . .
# The release profile strips symbols; --locked builds exactly what Cargo.lock holds.
RUN cargo build --release --locked -p "$FUNCTION" --bin "$FUNCTION" \
 && cp "target/release/$FUNCTION" /function

# Distroless: glibc and CA certificates (rustls verifies Google's and SendGrid's TLS with the
# system roots), no shell, and the nonroot user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /function /function
USER nonroot:nonroot
ENV PORT=8080
EXPOSE 8080
ENTRYPOINT ["/function"]
