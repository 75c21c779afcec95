//! Route tables: Create/Delete/DescribeRouteTables, Associate and
//! DisassociateRouteTable, Create/Replace/DeleteRoute. An association's
//! ID (`rtbassoc-…`) is made from its subnet's, as a subnet has at most
//! one table; a main table's from the table's.

use crate::cloud::api::{Action, Tagged};
use crate::cloud::ids::Kind;
use crate::cloud::vpc::route_table::RouteTable;

use super::super::error::Ec2Error;
use super::super::xml::Xml;
use super::{Call, Operation, Target, derived_id, done, named, origin_id};

const TABLE: Target = named(Kind::RouteTable, "RouteTableId");
const ASSOCIATION: &str = "rtbassoc";

pub const OPERATIONS: &[Operation] = &[
    Operation::new("CreateRouteTable", named(Kind::Vpc, "VpcId"), create),
    Operation::new("DeleteRouteTable", TABLE, delete),
    Operation::new("DescribeRouteTables", Target::Any, describe),
    Operation::new("AssociateRouteTable", TABLE, associate),
    Operation::new("DisassociateRouteTable", Target::Any, disassociate),
    Operation::new("CreateRoute", TABLE, create_route),
    Operation::new("ReplaceRoute", TABLE, replace_route),
    Operation::new("DeleteRoute", TABLE, delete_route),
];

fn create(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let table = call.one::<RouteTable>(Action::CreateRouteTable {
        vpc: call.params.required("VpcId")?.to_owned(),
        tags: call.tag_spec("route-table")?,
    })?;
    let mut x = Xml::new();
    x.node("routeTable", |x| write(x, &table, call.account));
    Ok(x)
}

fn delete(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let table = call.params.required("RouteTableId")?.to_owned();
    call.run(Action::DeleteRouteTable { table })?;
    done()
}

fn describe(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let tables = call.describe(
        "RouteTableId",
        Action::ListRouteTables { filters: vec![] },
        |table| Action::DescribeRouteTable { table },
        field,
    )?;
    let mut x = Xml::new();
    x.list("routeTableSet", &tables, |x, t| write(x, t, call.account));
    Ok(x)
}

fn field(t: &RouteTable, name: &str) -> Option<Vec<String>> {
    Some(match name {
        "route-table-id" => vec![t.id.clone()],
        "vpc-id" => vec![t.vpc_id.clone()],
        "association.main" => vec![t.main.to_string()],
        "association.subnet-id" => t.subnets.clone(),
        "association.route-table-association-id" => associations(t),
        "route.gateway-id" => t.routes.iter().map(|r| r.target.clone()).collect(),
        "route.destination-cidr-block" => {
            t.routes.iter().map(|r| r.destination.to_string()).collect()
        }
        _ => return None,
    })
}

fn associations(t: &RouteTable) -> Vec<String> {
    let main = t.main.then(|| derived_id(ASSOCIATION, &t.id));
    main.into_iter()
        .chain(t.subnets.iter().map(|s| derived_id(ASSOCIATION, s)))
        .collect()
}

fn write(x: &mut Xml, t: &Tagged<RouteTable>, account: &str) {
    let table = &t.item;
    x.leaf("routeTableId", &table.id)
        .leaf("vpcId", &table.vpc_id)
        .leaf("ownerId", account)
        .node("routeSet", |x| {
            for r in &table.routes {
                // The `local` route comes with the table.
                let origin = if r.target == "local" {
                    "CreateRouteTable"
                } else {
                    "CreateRoute"
                };
                x.node("item", |x| {
                    x.leaf("destinationCidrBlock", r.destination)
                        .leaf("gatewayId", &r.target)
                        .leaf("state", "active")
                        .leaf("origin", origin);
                });
            }
        })
        .node("associationSet", |x| {
            if table.main {
                x.node("item", |x| {
                    association(x, &derived_id(ASSOCIATION, &table.id), &table.id, None);
                });
            }
            for s in &table.subnets {
                x.node("item", |x| {
                    association(x, &derived_id(ASSOCIATION, s), &table.id, Some(s));
                });
            }
        })
        .node("propagatingVgwSet", |_| {})
        .tags(&t.tags);
}

fn association(x: &mut Xml, id: &str, table: &str, subnet: Option<&String>) {
    x.leaf("routeTableAssociationId", id)
        .leaf("routeTableId", table)
        .opt("subnetId", subnet)
        .leaf("main", subnet.is_none())
        .node("associationState", |x| {
            x.leaf("state", "associated");
        });
}

fn associate(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let subnet = call.params.required("SubnetId")?.to_owned();
    call.run(Action::AssociateRouteTable {
        table: call.params.required("RouteTableId")?.to_owned(),
        subnet: subnet.clone(),
    })?;
    let mut x = Xml::new();
    x.leaf("associationId", derived_id(ASSOCIATION, &subnet))
        .node("associationState", |x| {
            x.leaf("state", "associated");
        });
    Ok(x)
}

fn disassociate(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let id = call.params.required("AssociationId")?;
    let not_found = || {
        Ec2Error::client(
            "InvalidAssociationID.NotFound",
            format!("The association ID '{id}' does not exist"),
        )
    };
    let subnet = origin_id(id, ASSOCIATION, Kind::Subnet).ok_or_else(not_found)?;
    let tables = call.records::<RouteTable>(Action::ListRouteTables { filters: vec![] })?;
    let table = tables
        .into_iter()
        .find(|t| t.item.subnets.contains(&subnet))
        .ok_or_else(not_found)?;
    call.run(Action::DisassociateRouteTable {
        table: table.item.id,
        subnet,
    })?;
    done()
}

fn destination(call: &Call<'_>) -> Result<crate::net::cidr::Ipv4Cidr, Ec2Error> {
    let text = call.params.required("DestinationCidrBlock")?;
    text.parse()
        .map_err(|e| Ec2Error::client("InvalidParameterValue", format!("{e}")))
}

fn create_route(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    call.run(Action::CreateRoute {
        table: call.params.required("RouteTableId")?.to_owned(),
        destination: destination(call)?,
        gateway: gateway(call)?,
    })?;
    done()
}

/// The target: only internet gateways are routed to.
fn gateway(call: &Call<'_>) -> Result<String, Ec2Error> {
    for other in [
        "NatGatewayId",
        "InstanceId",
        "NetworkInterfaceId",
        "VpcPeeringConnectionId",
        "TransitGatewayId",
    ] {
        if call.params.get(other).is_some() {
            return Err(Ec2Error::unsupported(&format!("a route to a {other}")));
        }
    }
    Ok(call.params.required("GatewayId")?.to_owned())
}

fn replace_route(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    let table = call.params.required("RouteTableId")?.to_owned();
    let destination = destination(call)?;
    let gateway = gateway(call)?;
    call.run(Action::DeleteRoute {
        table: table.clone(),
        destination,
    })?;
    call.run(Action::CreateRoute {
        table,
        destination,
        gateway,
    })?;
    done()
}

fn delete_route(call: &Call<'_>) -> Result<Xml, Ec2Error> {
    call.run(Action::DeleteRoute {
        table: call.params.required("RouteTableId")?.to_owned(),
        destination: destination(call)?,
    })?;
    done()
}
