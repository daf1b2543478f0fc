terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      app = var.name
    }
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}
