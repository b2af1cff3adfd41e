//! `#[conduit::service]`: from a trait, an RPC client and a dispatcher.
//!
//! For `trait Calculator { fn add(&self, a: i64, b: i64) -> i64; }` it
//! keeps the trait and adds:
//!
//! * `CalculatorClient` — `new(conduit::rpc::Client)`, and per method a
//!   blocking `add(&self, a, b) -> Result<i64, conduit::rpc::RpcError>`
//!   and an `async fn add_async` twin (sent at once, answered through
//!   the client's pipeline, any number in flight; dropping its future
//!   cancels the call and tells the server), plus `rpc()` for the
//!   client's settings;
//! * `CalculatorServer<T>(pub T)` — for any `T: Calculator`, a
//!   `conduit::rpc::Dispatch` that decodes the arguments by method name,
//!   calls `T`, and encodes the result.
//!
//! Methods take `&self` and arguments that are `Serialize +
//! DeserializeOwned` (by value), and return one such type (or nothing).
#![forbid(unsafe_code)]

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::{FnArg, ItemTrait, Pat, ReturnType, TraitItem, parse_macro_input};

/// Generate an RPC client and dispatcher for a trait (see the crate
/// documentation).
#[proc_macro_attribute]
pub fn service(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let tr = parse_macro_input!(item as ItemTrait);
    match expand(&tr) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(tr: &ItemTrait) -> syn::Result<proc_macro2::TokenStream> {
    let name = &tr.ident;
    let vis = &tr.vis;
    let client = format_ident!("{}Client", name);
    let server = format_ident!("{}Server", name);
    let mut client_methods = Vec::new();
    let mut arms = Vec::new();
    for item in &tr.items {
        let TraitItem::Fn(f) = item else { continue };
        let sig = &f.sig;
        let method = &sig.ident;
        let method_name = method.to_string();
        let async_method = format_ident!("{}_async", method);
        match sig.inputs.first() {
            Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
            _ => return Err(syn::Error::new_spanned(sig, "a service method takes &self")),
        }
        let mut names = Vec::new();
        let mut types = Vec::new();
        for arg in sig.inputs.iter().skip(1) {
            let FnArg::Typed(pt) = arg else { unreachable!("only the first argument is a receiver") };
            let Pat::Ident(id) = &*pt.pat else {
                return Err(syn::Error::new_spanned(&pt.pat, "service arguments are plain names"));
            };
            names.push(id.ident.clone());
            types.push((*pt.ty).clone());
        }
        let ret = match &sig.output {
            ReturnType::Default => quote!(()),
            ReturnType::Type(_, t) => quote!(#t),
        };
        let doc = format!("Call `{method_name}` on the server.");
        let doc_async = format!("Call `{method_name}` on the server without blocking the async runtime.");
        client_methods.push(quote! {
            #[doc = #doc]
            pub fn #method(&self, #(#names: #types),*) -> ::core::result::Result<#ret, ::conduit::rpc::RpcError> {
                self.inner.call(#method_name, &(#(#names,)*))
            }

            #[doc = #doc_async]
            pub async fn #async_method(&self, #(#names: #types),*) -> ::core::result::Result<#ret, ::conduit::rpc::RpcError> {
                self.inner.call_async(#method_name, &(#(#names,)*)).await
            }
        });
        arms.push(quote! {
            #method_name => {
                let (#(#names,)*): (#(#types,)*) = match ::conduit::rpc::decode_args(args) {
                    ::core::result::Result::Ok(a) => a,
                    ::core::result::Result::Err(o) => return o,
                };
                ::conduit::rpc::returned(&self.0.#method(#(#names),*))
            }
        });
    }
    let client_doc = format!("The client stub of [`{name}`]: each method a call to the server.");
    let server_doc = format!("The server stub of [`{name}`]: dispatches calls to the `T` it holds.");
    Ok(quote! {
        #tr

        #[doc = #client_doc]
        #[derive(Debug, Clone)]
        #vis struct #client {
            inner: ::std::sync::Arc<::conduit::rpc::Client>,
        }

        impl #client {
            /// A client stub over an RPC connection.
            pub fn new(client: ::conduit::rpc::Client) -> Self {
                Self { inner: ::std::sync::Arc::new(client) }
            }

            /// The connection (timeouts).
            pub fn rpc(&self) -> &::conduit::rpc::Client {
                &self.inner
            }

            #(#client_methods)*
        }

        #[doc = #server_doc]
        #[derive(Debug)]
        #vis struct #server<T>(pub T);

        impl<T: #name> ::conduit::rpc::Dispatch for #server<T> {
            fn dispatch(&self, method: &str, args: &[u8]) -> ::conduit::rpc::Outcome {
                match method {
                    #(#arms)*
                    other => ::conduit::rpc::Outcome::UnknownMethod(other.to_string()),
                }
            }
        }
    })
}
