//! `DoGet` answered without tonic's encoder, so that a chunk's body goes from the mapping
//! to the socket with no copy in evshmd.
//!
//! tonic encodes every message into a buffer of its own (a copy of the whole chunk, tens of
//! megabytes); h2 itself writes a large DATA frame's payload straight from the `Bytes` it is
//! given (vectored writes). So the `DoGet` route is taken over here, in front of the
//! generated service ([`ZeroCopyDoGet`]): the request's `Ticket` is read and checked as
//! the service would, and the reply is a gRPC message stream written by hand: for each
//! `FlightData`, a small frame (the gRPC length prefix, the protobuf field keys and
//! lengths, the IPC message's flatbuffer: a few hundred bytes, copied) followed by the
//! body, a slice of the mapping, as its own frame; then the `grpc-status` trailer. A client
//! sees the protobuf encoding of `FlightData` (fields 2 and 1000), the flatbuffer padded
//! with zeros so that the body lands aligned in a reader's buffer ([`BODY_PLACE`]). Every
//! other method goes to the generated service unchanged.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use arrow_flight::{FlightData, Ticket};
use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use prost::Message;
use tonic::Status;
use tonic::body::Body as GrpcBody;
use tonic::server::NamedService;
use tower_service::Service;

use super::MAX_REQUEST_BYTES;
use super::service::EvshmFlight;

/// The path of `DoGet`.
const DO_GET: &str = "/arrow.flight.protocol.FlightService/DoGet";

/// The Flight service with its `DoGet` route answered here, its body never copied.
#[derive(Debug, Clone)]
pub struct ZeroCopyDoGet<S> {
    inner: S,
    service: EvshmFlight,
}

impl<S> ZeroCopyDoGet<S> {
    /// `inner` (the generated service), with `DoGet` taken over for `service`.
    pub fn new(inner: S, service: EvshmFlight) -> Self {
        Self { inner, service }
    }
}

impl<S: NamedService> NamedService for ZeroCopyDoGet<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<Request<GrpcBody>> for ZeroCopyDoGet<S>
where
    S: Service<Request<GrpcBody>, Response = Response<GrpcBody>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<GrpcBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<GrpcBody>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<GrpcBody>) -> Self::Future {
        if request.uri().path() != DO_GET {
            return Box::pin(self.inner.call(request));
        }
        let service = self.service.clone();
        Box::pin(async move {
            Ok(match do_get(&service, request).await {
                Ok(response) => response,
                Err(status) => status.into_http(),
            })
        })
    }
}

/// Reads the ticket, checks the caller, and streams the chunk.
async fn do_get(
    service: &EvshmFlight,
    request: Request<GrpcBody>,
) -> Result<Response<GrpcBody>, Status> {
    let (parts, body) = request.into_parts();
    let metadata = tonic::metadata::MetadataMap::from_headers(parts.headers);
    service.token().check_metadata(&metadata)?;
    let limited = http_body_util::Limited::new(body, MAX_REQUEST_BYTES + 5);
    let bytes = match limited.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return Err(Status::resource_exhausted(format!(
                "{}bad_request: request over {MAX_REQUEST_BYTES} bytes or cut short: {e}",
                super::status::PREFIX
            )));
        }
    };
    let ticket = grpc_message(&bytes).and_then(|message| {
        Ticket::decode(message).map_err(|e| Status::invalid_argument(e.to_string()))
    })?;
    let peer = parts.extensions.get::<tonic::transport::server::TcpConnectInfo>();
    let peer = peer.and_then(tonic::transport::server::TcpConnectInfo::remote_addr);
    let messages = service.do_get_frames(ticket, peer).await?;
    let mut frames = VecDeque::new();
    for data in messages {
        frames.extend(frames_of(data));
    }
    let body = Frames { frames, trailers: true };
    let mut response = Response::new(GrpcBody::new(body));
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/grpc"));
    Ok(response)
}

/// The one message of a unary gRPC request body: no compression, exactly one frame.
fn grpc_message(body: &[u8]) -> Result<&[u8], Status> {
    let malformed = |what: &str| Status::invalid_argument(format!("malformed request: {what}"));
    let (&flag, rest) = body.split_first().ok_or_else(|| malformed("empty"))?;
    if flag != 0 {
        return Err(Status::unimplemented("compressed requests are not accepted"));
    }
    let (len, message) = rest.split_at_checked(4).ok_or_else(|| malformed("no length"))?;
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if message.len() != len {
        return Err(malformed("length does not match"));
    }
    Ok(message)
}

/// Where a body starts in a message, modulo 64. A reader that receives a message of tens
/// of megabytes into an allocation of its own (tonic reserves the whole message at once,
/// its 5-byte gRPC prefix in front, in one of glibc's large allocations, 16 bytes past a
/// page) then finds the body 64-byte aligned, and decodes it in place: measured with
/// evshm's Rust client, whose bodies otherwise landed 5 bytes past a multiple of 64 and
/// were copied to realign them. Elsewhere it costs nothing but a few zeros.
const BODY_PLACE: usize = 43;

/// One `FlightData` as gRPC frames: its prefix, keys and header in one small frame, its
/// body (a slice of the mapping) in another, as prost would encode it (the header padded
/// with zeros to place the body, see [`BODY_PLACE`]).
fn frames_of(data: FlightData) -> Vec<Bytes> {
    /// Field 2 (`data_header`) and field 1000 (`data_body`), both length-delimited.
    const HEADER_KEY: &[u8] = &[0x12];
    const BODY_KEY: &[u8] = &[0xC2, 0x3E];
    let FlightData { data_header, data_body, .. } = data;
    let field = |key: &[u8], len: usize| match len {
        0 => 0,
        n => key.len() + prost::length_delimiter_len(n) + n,
    };
    // Zeros after the flatbuffer (readers ignore them, as IPC's own padding) so that the
    // body starts BODY_PLACE bytes past a multiple of 64 from the message's start.
    let pad = match data_body.len() {
        0 => 0,
        body => (0..64)
            .find(|pad| {
                let offset = field(HEADER_KEY, data_header.len() + pad)
                    + BODY_KEY.len()
                    + prost::length_delimiter_len(body);
                offset % 64 == BODY_PLACE
            })
            .unwrap_or(0),
    };
    let header_len = data_header.len() + pad;
    let mut head = BytesMut::with_capacity(32 + header_len);
    let len = field(HEADER_KEY, header_len) + field(BODY_KEY, data_body.len());
    head.put_u8(0);
    head.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    if header_len > 0 {
        head.put_slice(HEADER_KEY);
        let _ = prost::encode_length_delimiter(header_len, &mut head);
        head.put_slice(&data_header);
        head.put_bytes(0, pad);
    }
    if data_body.is_empty() {
        return vec![head.freeze()];
    }
    head.put_slice(BODY_KEY);
    let _ = prost::encode_length_delimiter(data_body.len(), &mut head);
    vec![head.freeze(), data_body]
}

/// A response body of ready frames, then `grpc-status: 0`. (The bodies' bytes hold the
/// stream's lease: h2 keeps them until they are written.)
struct Frames {
    frames: VecDeque<Bytes>,
    trailers: bool,
}

impl Body for Frames {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(bytes) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        if std::mem::take(&mut self.trailers) {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && !self.trailers
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.frames.iter().map(|b| b.len() as u64).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_decode_as_flight_data_with_the_body_in_place() {
        let cases = [
            (Bytes::from_static(b"header"), Bytes::from(vec![7u8; 300])),
            (Bytes::from_static(b"schema only"), Bytes::new()),
            (Bytes::from(vec![1u8; 200]), Bytes::from(vec![2u8; 70_000])),
        ];
        for (header, body) in cases {
            let data = FlightData {
                data_header: header.clone(),
                data_body: body.clone(),
                ..FlightData::default()
            };
            let frames = frames_of(data);
            let bytes = frames.concat();
            let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
            assert_eq!((bytes[0], bytes.len()), (0, 5 + len));
            let decoded = FlightData::decode(&bytes[5..]).unwrap();
            assert_eq!(decoded.data_body, body);
            assert_eq!(&decoded.data_header[..header.len()], &header[..]);
            assert!(decoded.data_header[header.len()..].iter().all(|&b| b == 0));
            if !body.is_empty() {
                assert_eq!(frames[1].as_ptr(), body.as_ptr(), "the body is not copied");
                assert_eq!((bytes.len() - body.len() - 5) % 64, BODY_PLACE, "placed");
            }
        }
    }

    #[test]
    fn requests_are_one_uncompressed_message() {
        let ticket = Ticket::new("t").encode_to_vec();
        let mut framed = vec![0u8];
        framed.extend_from_slice(&(ticket.len() as u32).to_be_bytes());
        framed.extend_from_slice(&ticket);
        assert_eq!(grpc_message(&framed).unwrap(), &ticket[..]);
        assert!(grpc_message(&[]).is_err());
        assert!(grpc_message(&framed[..framed.len() - 1]).is_err());
        framed[0] = 1;
        assert!(grpc_message(&framed).is_err());
    }
}
