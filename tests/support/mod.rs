pub mod registry;
pub mod registry_image;
pub mod registry_proxy;
pub mod registry_token;
