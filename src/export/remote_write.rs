//! Prometheus remote write 1.0's messages (prost derives of the `prompb` types this
//! exporter sends; no `protoc` needed) and the snappy block encoding of a request.

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WriteRequest {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub(crate) timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`: labels sorted by name, samples in time order.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TimeSeries {
    /// The labels, `__name__` among them.
    #[prost(message, repeated, tag = "1")]
    pub(crate) labels: Vec<Label>,
    /// The samples.
    #[prost(message, repeated, tag = "2")]
    pub(crate) samples: Vec<PbSample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub(crate) value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PbSample {
    /// The value.
    #[prost(double, tag = "1")]
    pub(crate) value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub(crate) timestamp: i64,
}

impl WriteRequest {
    /// The request as remote write sends it: protobuf, snappy block format.
    pub(crate) fn encode_snappy(&self) -> Vec<u8> {
        let raw = prost::Message::encode_to_vec(self);
        snap::raw::Encoder::new()
            .compress_vec(&raw)
            .expect("snappy compresses any buffer below 4 GiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips_through_snappy_and_protobuf() {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "fp_cpu".into(),
                }],
                samples: vec![PbSample {
                    value: 0.25,
                    timestamp: 1_700_000_000_000,
                }],
            }],
        };
        let wire = req.encode_snappy();
        let raw = snap::raw::Decoder::new().decompress_vec(&wire).unwrap();
        let back: WriteRequest = prost::Message::decode(raw.as_slice()).unwrap();
        assert_eq!(back, req);
    }
}
