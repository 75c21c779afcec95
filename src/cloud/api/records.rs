//! Records as the API hands them out: each with its tags, and which
//! `Response` carries a kind of record.

use serde::{Deserialize, Serialize};

use super::Response;
use crate::cloud::Error;
use crate::cloud::autoscaling::group::AutoScalingGroup;
use crate::cloud::elb::load_balancer::LoadBalancer;
use crate::cloud::elb::target_group::TargetGroup;
use crate::cloud::image::Image;
use crate::cloud::instance::Instance;
use crate::cloud::key_pair::KeyPair;
use crate::cloud::store::{Resource, Store};
use crate::cloud::tags::Tags;
use crate::cloud::template::LaunchTemplate;
use crate::cloud::vpc::elastic_ip::ElasticIp;
use crate::cloud::vpc::gateway::InternetGateway;
use crate::cloud::vpc::network::Vpc;
use crate::cloud::vpc::route_table::RouteTable;
use crate::cloud::vpc::security_group::SecurityGroup;
use crate::cloud::vpc::subnet::Subnet;

/// A resource with its tags, as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tagged<T> {
    #[serde(flatten)]
    pub item: T,
    pub tags: Tags,
}

impl<T> Tagged<T> {
    pub fn new(item: T, tags: Tags) -> Self {
        Self { item, tags }
    }
}

impl<T: Resource> Tagged<T> {
    /// `item` with its tags as stored.
    pub fn read(store: &mut Store, item: T) -> Result<Self, Error> {
        let tags = store.read(|tx| tx.tags(item.id()))?;
        Ok(Self { item, tags })
    }
}

/// A kind of record a `Response` carries.
pub trait Records: Resource + Sized {
    /// The response holding `items`.
    fn records(items: Vec<Tagged<Self>>) -> Response;
    /// The records of this kind in `response`, if it holds them.
    fn from_response(response: Response) -> Option<Vec<Tagged<Self>>>;
}

macro_rules! records {
    ($($record:ty => $variant:ident),* $(,)?) => {
        $(
            impl Records for $record {
                fn records(items: Vec<Tagged<Self>>) -> Response {
                    Response::$variant(items)
                }
                fn from_response(response: Response) -> Option<Vec<Tagged<Self>>> {
                    match response {
                        Response::$variant(items) => Some(items),
                        _ => None,
                    }
                }
            }
        )*
    };
}

records! {
    Instance => Instances,
    Image => Images,
    KeyPair => KeyPairs,
    LaunchTemplate => LaunchTemplates,
    Vpc => Vpcs,
    Subnet => Subnets,
    RouteTable => RouteTables,
    InternetGateway => InternetGateways,
    ElasticIp => Addresses,
    SecurityGroup => SecurityGroups,
    TargetGroup => TargetGroups,
    LoadBalancer => LoadBalancers,
    AutoScalingGroup => AutoScalingGroups,
}
