# The VPC of tests/endpoint_ec2.rs, for Terraform's AWS provider pointed
# at gureum's EC2 endpoint (`gureum daemon`, default 127.0.0.1:8773).
#
# Not run in CI: Terraform cannot be installed on the project's machines.
# The provider settings below are what a local EC2 endpoint needs: the
# endpoint URLs, and skipping the checks that call AWS's own services
# (account ID lookup through STS/IAM, instance metadata, the list of
# known regions). The provider also reads attributes gureum does not
# serve yet (DescribeVpcAttribute for DNS support/hostnames, network
# ACLs): expect `InvalidAction` for those until they exist.

terraform {
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }
}

provider "aws" {
  region                      = "us-east-1"
  access_key                  = "AKIAEXAMPLEKEY000001" # `gureum iam create-access-key -o json`
  secret_key                  = "example-secret"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true

  endpoints {
    ec2 = "http://127.0.0.1:8773"
    iam = "http://127.0.0.1:8773"
    sts = "http://127.0.0.1:8773"
  }
}

resource "aws_vpc" "main" {
  cidr_block = "10.20.0.0/16"
  tags       = { Name = "main" }
}

resource "aws_subnet" "public" {
  vpc_id     = aws_vpc.main.id
  cidr_block = "10.20.1.0/24"
  tags       = { Name = "public" }
}

resource "aws_subnet" "private" {
  vpc_id     = aws_vpc.main.id
  cidr_block = "10.20.2.0/24"
  tags       = { Name = "private" }
}

resource "aws_internet_gateway" "gw" {
  vpc_id = aws_vpc.main.id
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.main.id
  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.gw.id
  }
}

resource "aws_route_table_association" "public" {
  subnet_id      = aws_subnet.public.id
  route_table_id = aws_route_table.public.id
}

resource "aws_security_group" "web" {
  name        = "web"
  description = "web servers"
  vpc_id      = aws_vpc.main.id

  ingress {
    protocol    = "tcp"
    from_port   = 22
    to_port     = 22
    cidr_blocks = ["0.0.0.0/0"]
  }
  ingress {
    protocol  = "tcp"
    from_port = 8000
    to_port   = 8100
    self      = true
  }
}

resource "aws_key_pair" "deploy" {
  key_name   = "deploy"
  public_key = file("~/.ssh/id_ed25519.pub")
}

resource "aws_instance" "web" {
  ami                    = "ami-REPLACE" # `aws ec2 describe-images` or `gureum image list`
  instance_type          = "t3.micro"
  key_name               = aws_key_pair.deploy.key_name
  subnet_id              = aws_subnet.public.id
  vpc_security_group_ids = [aws_security_group.web.id]
  tags                   = { Name = "web-1" }
}
