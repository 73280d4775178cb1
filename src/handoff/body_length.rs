//! A response body measured against the Content-Length its app declared: both adapters
//! (ASGI and WSGI) hold the app to it the same way.

use bytes::Bytes;

/// How a chunk measures against the declared Content-Length.
#[derive(Debug, PartialEq, Eq)]
pub enum Length {
    Fits,
    /// More than declared: the chunk was cut to the declared length.
    Over,
    /// The body ends short of the declared length.
    Short,
}

/// The declared length (if the body must match one) and the bytes counted against it.
#[derive(Default)]
pub struct BodyLength {
    pub declared: Option<u64>,
    pub sent: u64,
}

impl BodyLength {
    /// Counts `body` (the last chunk when `last`), cutting what goes past the declared
    /// length.
    pub fn measure(&mut self, body: &mut Bytes, last: bool) -> Length {
        let Some(declared) = self.declared else {
            return Length::Fits;
        };
        let room = declared - self.sent;
        if body.len() as u64 > room {
            body.truncate(room as usize);
            self.sent = declared;
            return Length::Over;
        }
        self.sent += body.len() as u64;
        if last && self.sent < declared {
            return Length::Short;
        }
        Length::Fits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_what_goes_past_and_sees_a_short_end() {
        let mut m = BodyLength {
            declared: Some(5),
            sent: 0,
        };
        let mut b = Bytes::from_static(b"abc");
        assert_eq!(m.measure(&mut b, false), Length::Fits);
        let mut b = Bytes::from_static(b"defg");
        assert_eq!(m.measure(&mut b, false), Length::Over);
        assert_eq!(&b[..], b"de");
        let mut m = BodyLength {
            declared: Some(5),
            sent: 0,
        };
        let mut b = Bytes::from_static(b"abc");
        assert_eq!(m.measure(&mut b, true), Length::Short);
        let mut free = BodyLength::default();
        assert_eq!(free.measure(&mut b, true), Length::Fits);
    }
}
