//! The EC2, IAM and STS Query API endpoint. (This branch holds only the
//! IAM and STS handlers and the reply they make; the server is the EC2
//! half's, and its file replaces this one at the merge.)

pub mod iam;
pub mod sts;

/// An HTTP reply: its status and the whole XML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}
